"""`landmarkinit run --cases`: the pipeline over many MR/US pairs, one output folder per case.

Cases come from a folder (LandmarkInit dataset layout or mu-RegPro, see dataset.py) or a CSV file with the
columns ``case,mr,us`` (paths relative to the CSV). Each case runs in its own worker: a local process pool
(``workers``), or a Dask distributed cluster (``dask``: a scheduler address such as tcp://host:8786, or "local"
to start one on this machine). Dask was chosen over Ray because it is pure Python, installs from PyPI without
native services, and reaches HPC schedulers (SLURM, PBS via dask-jobqueue) and Kubernetes with the same client
code; the work here is plain independent tasks, for which its scheduler is sufficient.

A failing case is recorded and the others go on. Running the batch again resumes it: every file of a case is
written atomically and report.json last, so a case folder without a readable report.json is unfinished and is
redone; a finished case keeps its result and its verdict unless its inputs (path, size, sha256) or the settings
that shape the result changed since, in which case it is redone.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import multiprocessing
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError
from LandmarkInitLib.io.images import volume_fingerprint
from LandmarkInitLib.io.output_files import BATCH_SUMMARY_FILE, REPORT_JSON_FILE, RUN_FILES, temporary_files
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
    models: str | None = None  # a models folder (detection/models_folder.py); mr_model/us_model win over it
    weighting: str = DEFAULT_WEIGHTING
    refine: bool = False
    qa_thresholds: str | None = None
    force: bool = False
    threads: int | None = 1
    backend: str = "onnx"


def is_plain_folder_name(name: str) -> bool:
    """A name that stays one folder inside the output folder on every platform."""
    return (
        name not in ("", ".", "..", BATCH_SUMMARY_FILE)
        and "\0" not in name
        and PurePosixPath(name).name == name
        and PureWindowsPath(name).name == name
    )


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
    for name in names:
        if not is_plain_folder_name(name):
            raise LandmarkFileError(
                f"{source}: case name {name!r} is not a plain folder name; a case name names its output folder "
                f"inside --output-dir, so it may not be empty, '.', '..', {BATCH_SUMMARY_FILE}, an absolute path "
                "or contain '/' or '\\'"
            )
    if len(set(names)) != len(names):
        raise LandmarkFileError(f"{source}: case names must be unique (they name the output folders)")
    if not specs:
        raise LandmarkFileError(f"{source} holds no cases")
    return specs


_DETECTORS = {}


def _earlier_result(out: Path) -> dict | None:
    """The finished result in ``out`` (its report.json, parsed, and every file it lists present), else None."""
    try:
        report = json.loads((out / REPORT_JSON_FILE).read_text(encoding="utf-8"))
        complete = all((out / name).is_file() for name in report["files"])
        verdict = isinstance(report["quality"]["review_recommended"], bool) and report["quality"]["flags"] is not None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return report if complete and verdict else None


@functools.lru_cache(maxsize=8)  # a resumed batch asks for every case; the folder's checksums are checked once
def _model_now(options: RunOptions, modality: str) -> dict:
    """The model a case would run now, as report.json's ``models`` records it (pipeline.run._model_info): the
    weights files behind the card, the card file's sha256 and the folder it comes from."""
    from LandmarkInitLib.detection.model_card import load_card
    from LandmarkInitLib.detection.models_folder import model_identity, model_weights, resolve_cards
    from LandmarkInitLib.resources import default_model_card

    card = load_card(
        resolve_cards(options.models, options.mr_model, options.us_model)[modality] or default_model_card(modality)
    )
    return {"weights": model_weights(card), **model_identity(card)}


def _same_model(earlier: dict, now: dict) -> bool:
    """Same weights, and (when the earlier report records them: not before the models folder) the same card file
    from the same folder: a change of models folder redoes the cases even if it holds the same weights."""
    return earlier["weights"] == now["weights"] and all(
        earlier.get(key, now[key]) == now[key] for key in ("card_sha256", "folder")
    )


def _why_outdated(report: dict, spec: CaseSpec, options: RunOptions) -> str | None:
    """Why an earlier result no longer answers this case (its inputs or the settings that shape it changed)."""
    try:
        return _compare(report, spec, options)
    except (KeyError, TypeError, AttributeError):
        return "the earlier result's report.json is incomplete"


def _compare(report: dict, spec: CaseSpec, options: RunOptions) -> str | None:
    from LandmarkInitLib.pipeline.quality import load_thresholds

    inputs = report["inputs"]
    if "fingerprints" not in inputs:  # release 0.1
        return "the earlier result does not record its inputs"
    for modality, path in (("mr", spec.mr), ("us", spec.us)):
        recorded = inputs["fingerprints"][modality]
        if inputs.get(modality) != path:
            return f"inputs changed since the earlier result ({modality.upper()} is now {path}, was {inputs[modality]})"
        try:
            now = volume_fingerprint(path)
        except OSError:
            return f"inputs changed since the earlier result ({modality.upper()} volume {path} cannot be read now)"
        if (now["size"], now["sha256"]) != (recorded["size"], recorded["sha256"]):
            return f"inputs changed since the earlier result ({modality.upper()} volume {path} differs)"
    changed = [
        name
        for name, earlier, now in (
            ("weighting", report["fit"]["weighting"], options.weighting),
            ("refine", report["refinement"] is not None, options.refine),
            (
                "qa thresholds",
                report["quality"]["thresholds"],
                json.loads(json.dumps(load_thresholds(options.qa_thresholds))),
            ),
        )
        if earlier != now
    ] + [
        f"{modality.upper()} model"
        for modality in ("mr", "us")
        if not _same_model(report["models"][modality], _model_now(options, modality))
    ]
    return f"settings changed since the earlier result ({', '.join(changed)})" if changed else None


def _discard(out: Path, created: bool) -> None:
    """After a failure or an interruption: remove the temporaries a case left, the files of this run if it created
    the folder (only RUN_FILES: never a file of the user's), and the folder if that leaves it empty (an earlier
    batch killed before it could clean up may have made it)."""
    for path in temporary_files(out, RUN_FILES) + ([out / name for name in RUN_FILES] if created else []):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # missing, or not empty: it holds something; keep it
        out.rmdir()


def run_one(spec: CaseSpec, output_root: str, options: RunOptions) -> dict:
    """Run one case; never raises: the outcome says ok / review / failed, and ``resumed`` when that verdict is an
    earlier result's, not recomputed (``redone`` says why an earlier result was recomputed). Detectors are opened
    once per worker process and reused."""
    from LandmarkInitLib.pipeline.initialize import Detectors
    from LandmarkInitLib.pipeline.quality import load_thresholds
    from LandmarkInitLib.pipeline.run import run_case

    out = Path(output_root) / spec.name
    t0 = time.perf_counter()
    created = not out.exists()
    redone = None
    try:
        if not created and not options.force and (earlier := _earlier_result(out)) is not None:
            redone = _why_outdated(earlier, spec, options)
            if redone is None:
                for path in temporary_files(out, RUN_FILES):
                    path.unlink(missing_ok=True)
                return {
                    "case": spec.name,
                    "status": "review" if earlier["quality"]["review_recommended"] else "ok",
                    "flags": earlier["quality"]["flags"],
                    "resumed": True,
                }
        key = (options.mr_model, options.us_model, options.models, options.backend, options.threads)
        if key not in _DETECTORS:
            _DETECTORS[key] = Detectors.open(
                options.mr_model, options.us_model, options.backend, options.threads, models=options.models
            )
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
            resume=not created,  # this batch's folder: an unfinished or outdated result, ours to replace
        )
    except LandmarkInitError as e:
        _discard(out, created)
        return {"case": spec.name, "status": "failed", "error": str(e), "seconds": time.perf_counter() - t0}
    except Exception as e:  # an unexpected failure of one case must not stop the cohort
        _discard(out, created)
        return {
            "case": spec.name,
            "status": "failed",
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(limit=5),
            "seconds": time.perf_counter() - t0,
        }
    except BaseException:  # Ctrl-C in a sequential batch
        _discard(out, created)
        raise
    outcome = {
        "case": spec.name,
        "status": "review" if result.quality.review else "ok",
        "flags": result.quality.flags,
        "seconds": time.perf_counter() - t0,
    }
    return outcome | ({"redone": f"{redone}; redone"} if redone else {})


def _die_with_the_batch(parent: int) -> None:
    """Process-pool worker initializer. A worker must not outlive the batch process: Linux sends it SIGTERM when
    the parent dies (killed, SIGKILL included), and a parent already dead before that was set is checked for.
    Ctrl-C reaches the whole process group; the parent alone handles it (it stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1  # <linux/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _run_pool(specs, output_root: Path, options: RunOptions, workers: int, bar) -> list[dict]:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_the_batch, initargs=(os.getpid(),))
    outcomes = []
    try:
        futures = {pool.submit(run_one, s, str(output_root), options): s for s in specs}
        for future in as_completed(futures):
            try:
                outcomes.append(future.result())
            except BrokenProcessPool:  # a worker was killed (out of memory?): its case and the ones queued fail
                error = "its worker process died (killed, or out of memory?); run the batch again to redo it"
                outcomes.append({"case": futures[future].name, "status": "failed", "error": error})
            bar.update()
    except BaseException:  # Ctrl-C: stop the cases in flight now rather than after they finish
        for process in multiprocessing.active_children():
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return outcomes


def run_batch(source, output_root, options: RunOptions, *, workers: int = 1, dask: str | None = None, progress=True):
    """Run every case; returns the summary (also written to OUTPUT/batch_summary.json). On Ctrl-C
    (KeyboardInterrupt, re-raised), the workers are stopped and the unfinished cases of this run leave nothing."""
    from tqdm import tqdm

    _model_now.cache_clear()  # a models folder may have changed since an earlier batch of this process
    specs = read_cases(source)
    output_root = Path(output_root)
    output_root.mkdir(parents=True, exist_ok=True)
    for path in temporary_files(output_root, [BATCH_SUMMARY_FILE]):
        path.unlink()
    existed = {s.name for s in specs if (output_root / s.name).exists()}
    t0 = time.perf_counter()
    bar = tqdm(total=len(specs), desc="cases", unit="case", disable=not progress)
    outcomes = []
    try:
        if dask:
            outcomes = _run_dask(specs, output_root, options, dask, bar, workers)
        elif workers > 1:
            outcomes = _run_pool(specs, output_root, options, workers, bar)
        else:
            for spec in specs:
                outcomes.append(run_one(spec, str(output_root), options))
                bar.update()
    except KeyboardInterrupt:
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        try:
            for spec in specs:
                out = output_root / spec.name
                if _earlier_result(out) is None:
                    _discard(out, spec.name not in existed)
        finally:
            signal.signal(signal.SIGINT, handler)
            bar.close()
        raise
    bar.close()
    outcomes.sort(key=lambda o: o["case"])
    summary = {
        "cases": len(specs),
        "counts": {s: sum(o["status"] == s for o in outcomes) for s in ("ok", "review", "failed")}
        | {"resumed": sum(bool(o.get("resumed")) for o in outcomes), "redone": sum("redone" in o for o in outcomes)},
        "seconds": time.perf_counter() - t0,
        "workers": workers,
        "engine": f"dask ({dask})" if dask else ("process pool" if workers > 1 else "sequential"),
        "models": {m: {k: v for k, v in _model_now(options, m).items() if k != "weights"} for m in ("mr", "us")},
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
    earlier = f"; {c['resumed']} of them earlier results, not recomputed" if c["resumed"] else ""
    redone = f"; {c['redone']} redone (inputs or settings changed)" if c["redone"] else ""
    lines = [
        f"{summary['cases']} cases: {c['ok']} ok, {c['review']} flagged for review, {c['failed']} failed{earlier}"
        f"{redone} ({summary['engine']}, {summary['seconds']:.1f} s)"
    ]
    if "models" in summary:
        from LandmarkInitLib.detection.models_folder import describe_model

        lines += [describe_model(m, summary["models"][m]) for m in ("mr", "us")]
    for o in summary["outcomes"]:
        if o["status"] == "failed":
            lines.append(f"  FAILED {o['case']}: {o['error']}")
        elif o["status"] == "review":
            lines.append(
                f"  review {o['case']}{' (earlier result)' if o.get('resumed') else ''}: {'; '.join(o['flags'])}"
            )
        if "redone" in o:
            lines.append(f"  redone {o['case']}: {o['redone']}")
    return "\n".join(lines)
