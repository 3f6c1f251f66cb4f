"""`landmarkinit run --cases`: the pipeline over many MR/US pairs, one output folder per case.

Cases come from a folder (LandmarkInit dataset layout or mu-RegPro, see dataset.py) or a CSV file with the
columns ``case,mr,us`` (paths relative to the CSV). Each case runs in its own worker: a local process pool
(``workers``), or a Dask distributed cluster (``dask``: a scheduler address such as tcp://host:8786, or "local"
to start one on this machine). Dask was chosen over Ray because it is pure Python, installs from PyPI without
native services, and reaches HPC schedulers (SLURM, PBS via dask-jobqueue) and Kubernetes with the same client
code; the work here is plain independent tasks, for which its scheduler is sufficient.

A failing case is recorded and the others go on; a case whose report.json exists is skipped (resume after an
interruption; every file of a case is written atomically and report.json last).
"""

from __future__ import annotations

import csv
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError
from LandmarkInitLib.io.output_files import BATCH_SUMMARY_FILE, REPORT_JSON_FILE
from LandmarkInitLib.pipeline.initialize import DEFAULT_WEIGHTING


@dataclass(frozen=True)
class CaseSpec:
    name: str
    mr: str
    us: str


@dataclass(frozen=True)
class RunOptions:
    mr_model: str | None = None
    us_model: str | None = None
    weighting: str = DEFAULT_WEIGHTING
    refine: bool = False
    qa_thresholds: str | None = None
    force: bool = False
    threads: int | None = 1
    backend: str = "onnx"


def read_cases(source) -> list[CaseSpec]:
    source = Path(source)
    if source.is_file():
        if source.suffix.lower() != ".csv":
            raise LandmarkFileError(f"{source}: give a folder of cases or a .csv file with columns case,mr,us")
        with source.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"case", "mr", "us"} - set(reader.fieldnames or [])
            if missing:
                raise LandmarkFileError(f"{source} lacks the column(s) {', '.join(sorted(missing))} (need case,mr,us)")
            rows = list(reader)
        specs = [
            CaseSpec(r["case"], str((source.parent / r["mr"]).resolve()), str((source.parent / r["us"]).resolve()))
            for r in rows
        ]
    elif source.is_dir():
        from LandmarkInitLib.io.datasets import open_dataset

        specs = [CaseSpec(c.name, str(c.images["mr"]), str(c.images["us"])) for c in open_dataset(source)]
    else:
        raise LandmarkFileError(f"{source} does not exist")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise LandmarkFileError(f"{source}: case names must be unique (they name the output folders)")
    if not specs:
        raise LandmarkFileError(f"{source} holds no cases")
    return specs


_DETECTORS = {}


def run_one(spec: CaseSpec, output_root: str, options: RunOptions) -> dict:
    """Run one case; never raises: the outcome says ok / review / failed / skipped. Detectors are opened once per
    worker process and reused."""
    from LandmarkInitLib.pipeline.initialize import Detectors
    from LandmarkInitLib.pipeline.quality import load_thresholds
    from LandmarkInitLib.pipeline.run import run_case

    out = Path(output_root) / spec.name
    if (out / REPORT_JSON_FILE).exists() and not options.force:
        return {"case": spec.name, "status": "skipped", "reason": "complete result already present"}
    t0 = time.perf_counter()
    try:
        key = (options.mr_model, options.us_model, options.backend, options.threads)
        if key not in _DETECTORS:
            _DETECTORS[key] = Detectors.open(options.mr_model, options.us_model, options.backend, options.threads)
        thresholds = load_thresholds(options.qa_thresholds)
        result = run_case(
            spec.mr,
            spec.us,
            out,
            detectors=_DETECTORS[key],
            weighting=options.weighting,
            refine=options.refine,
            qa_thresholds=thresholds,
            force=options.force,
        )
    except LandmarkInitError as e:
        return {"case": spec.name, "status": "failed", "error": str(e), "seconds": time.perf_counter() - t0}
    except Exception as e:  # an unexpected failure of one case must not stop the cohort
        return {
            "case": spec.name,
            "status": "failed",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(limit=5),
            "seconds": time.perf_counter() - t0,
        }
    return {
        "case": spec.name,
        "status": "review" if result.quality.review else "ok",
        "flags": result.quality.flags,
        "seconds": time.perf_counter() - t0,
    }


def run_batch(source, output_root, options: RunOptions, *, workers: int = 1, dask: str | None = None, progress=True):
    """Run every case; returns the summary (also written to OUTPUT/batch_summary.json)."""
    from tqdm import tqdm

    specs = read_cases(source)
    output_root = Path(output_root)
    output_root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bar = tqdm(total=len(specs), desc="cases", unit="case", disable=not progress)
    outcomes = []
    if dask:
        outcomes = _run_dask(specs, output_root, options, dask, bar, workers)
    elif workers > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run_one, s, str(output_root), options) for s in specs]
            for future in as_completed(futures):
                outcomes.append(future.result())
                bar.update()
    else:
        for spec in specs:
            outcomes.append(run_one(spec, str(output_root), options))
            bar.update()
    bar.close()
    outcomes.sort(key=lambda o: o["case"])
    summary = {
        "cases": len(specs),
        "counts": {s: sum(o["status"] == s for o in outcomes) for s in ("ok", "review", "failed", "skipped")},
        "seconds": time.perf_counter() - t0,
        "workers": workers,
        "engine": f"dask ({dask})" if dask else ("process pool" if workers > 1 else "sequential"),
        "outcomes": outcomes,
    }
    from LandmarkInitLib.pipeline.report import write_json

    write_json(summary, output_root / BATCH_SUMMARY_FILE, force=True)
    return summary


def _run_dask(specs, output_root: Path, options: RunOptions, address: str, bar, workers: int) -> list[dict]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise LandmarkInitError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
    cluster = (
        LocalCluster(n_workers=max(workers, 1), threads_per_worker=1, processes=True) if address == "local" else None
    )
    client = Client(cluster if cluster is not None else address)
    try:
        futures = client.map(run_one, specs, output_root=str(output_root), options=options, pure=False)
        outcomes = []
        for future in as_completed(futures):
            outcomes.append(future.result())
            bar.update()
        return outcomes
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def summary_text(summary: dict) -> str:
    c = summary["counts"]
    lines = [
        f"{summary['cases']} cases: {c['ok']} ok, {c['review']} flagged for review, {c['failed']} failed, "
        f"{c['skipped']} already done ({summary['engine']}, {summary['seconds']:.1f} s)"
    ]
    for o in summary["outcomes"]:
        if o["status"] == "failed":
            lines.append(f"  FAILED {o['case']}: {o['error']}")
        elif o["status"] == "review":
            lines.append(f"  review {o['case']}: {'; '.join(o['flags'])}")
    return "\n".join(lines)

