"""Generate a phantom dataset: many cases in parallel, deterministic for a seed, resumable.

Case ``i`` depends only on (seed, i), so the files are the same whatever the number of workers, and an
interrupted run continues where it stopped: complete case folders (written under a temporary name and
renamed) are kept when their case.json says they come from the same seed and generator version.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.datasets import CASE_FILES
from LandmarkInitResearch.phantom.case import GENERATOR_VERSION, PhantomOptions, case_name, generate_case

_worker_context = None


def _context():
    global _worker_context
    if _worker_context is None:
        from LandmarkInitLib.io.scene import create_context

        _worker_context = create_context()
    return _worker_context


def _make_case(output: str, seed: int, index: int, options: PhantomOptions, force: bool) -> dict:
    from LandmarkInitResearch.phantom.write import write_case

    case = generate_case(seed, index, options)
    write_case(case, Path(output) / case.name, _context(), force=force)
    return {
        "name": case.name,
        "seconds": case.meta["generation_seconds"],
        "probe": case.meta["probe"],
        "partial_view": case.meta["partial_view"],
    }


def _existing_case_ok(folder: Path, seed: int, index: int) -> bool:
    meta_path = folder / CASE_FILES["case"]
    if not meta_path.is_file():
        return False
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if (meta.get("seed"), meta.get("index"), meta.get("generator_version")) != (seed, index, GENERATOR_VERSION):
        raise LandmarkFileError(
            f"{folder} holds a case from another run (seed {meta.get('seed')}, index {meta.get('index')}, "
            f"generator {meta.get('generator_version')}); use another --output folder or pass --force"
        )
    return all((folder / name).is_file() for name in CASE_FILES.values())


def generate_dataset(
    output,
    count: int,
    seed: int,
    *,
    workers: int = 1,
    start: int = 0,
    options: PhantomOptions | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Write cases ``start .. start+count-1`` into ``output`` and a ``dataset.json`` describing the run."""
    if count < 1:
        raise LandmarkFileError("--count must be at least 1")
    if workers < 1:
        raise LandmarkFileError("--workers must be at least 1")
    options = options or PhantomOptions()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    indices = []
    skipped = 0
    for i in range(start, start + count):
        if not force and _existing_case_ok(output / case_name(i), seed, i):
            skipped += 1
        else:
            indices.append(i)
    results = []
    bar = _progress_bar(len(indices), progress)
    if workers == 1 or len(indices) <= 1:
        for i in indices:
            results.append(_make_case(str(output), seed, i, options, True))
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_make_case, str(output), seed, i, options, True) for i in indices]
            for future in as_completed(futures):
                results.append(future.result())
                bar.update(1)
    bar.close()
    summary = {
        "generator": "LandmarkInit synthetic prostate MR/TRUS phantom",
        "generator_version": GENERATOR_VERSION,
        "synthetic": True,
        "seed": seed,
        "first_index": start,
        "count": count,
        "options": {
            "probe": options.probe,
            "partial_fraction": options.partial_fraction,
            "rectum_lateral_mm": options.rectum_lateral_mm,
        },
    }
    (output / "dataset.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return {
        **summary,
        "written": sorted(r["name"] for r in results),
        "skipped_existing": skipped,
        "seconds_per_case": [r["seconds"] for r in results],
    }


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="case", desc="phantom", disable=not enabled)
