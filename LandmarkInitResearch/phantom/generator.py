"""Generate a phantom dataset: many cases in parallel, deterministic for a seed, resumable.

Case ``i`` depends only on (seed, i), so the files are the same whatever the number of workers, and an
interrupted run continues where it stopped, and ``start`` extends a dataset: complete case folders (written under a
temporary name and renamed) are kept when their case.json says they come from the same seed and generator version.
A folder holding cases of another run (seed, generator version, or options in its dataset.json) is refused unless
``force``; even then, cases of another run that this call would not replace are refused, so that a folder never
mixes runs. dataset.json describes the cases actually in the folder (written atomically, only when it changes).
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.datasets import CASE_FILES
from LandmarkInitLib.io.output_files import atomic_output
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


DATASET_FILE = "dataset.json"
GENERATOR = "LandmarkInit synthetic prostate MR/TRUS phantom"


def _case_folders(output: Path) -> dict[int, Path]:
    """Complete case folders (with a case.json) below ``output``, by their index."""
    folders = {}
    for folder in sorted(output.glob("case_*")):
        meta_path = folder / CASE_FILES["case"]
        if folder.is_dir() and meta_path.is_file():
            folders[int(json.loads(meta_path.read_text(encoding="utf-8")).get("index", -1))] = folder
    return folders


def _run_of(meta: dict) -> tuple:
    """What makes two datasets the same run: seed, generator version and options (a dataset.json written before an
    option existed used its default)."""
    options = asdict(PhantomOptions()) | meta.get("options", {})
    return meta.get("seed"), meta.get("generator_version"), tuple(sorted(options.items()))


def _describe(run: tuple) -> str:
    seed, version, options = run
    return f"seed {seed}, generator {version}, " + ", ".join(f"{k} {v}" for k, v in options)


def _check_other_runs(output: Path, seed: int, options: PhantomOptions, wanted: range, force: bool) -> None:
    """Refuse to mix runs in one folder: without ``force`` any case (or dataset.json) of another run; with it,
    those that this call would not replace."""
    this = _run_of({"seed": seed, "generator_version": GENERATOR_VERSION, "options": asdict(options)})
    dataset_path = output / DATASET_FILE
    described = json.loads(dataset_path.read_text(encoding="utf-8")) if dataset_path.is_file() else None
    other_dataset = described is not None and _run_of(described) != this
    other = []
    for index, folder in _case_folders(output).items():
        meta = json.loads((folder / CASE_FILES["case"]).read_text(encoding="utf-8"))
        if other_dataset or (meta.get("seed"), meta.get("generator_version")) != (seed, GENERATOR_VERSION):
            other.append(index)
    if not force and other_dataset:
        raise LandmarkFileError(
            f"{output} holds a dataset of another run ({_describe(_run_of(described))}); use another --output "
            "folder or pass --force to replace it"
        )
    if not force and other:
        raise LandmarkFileError(
            f"{output / case_name(other[0])} holds a case from another run; use another --output folder or pass --force"
        )
    kept = [i for i in other if i not in wanted]
    if kept:
        names = ", ".join(case_name(i) for i in kept[:3]) + (", ..." if len(kept) > 3 else "")
        raise LandmarkFileError(
            f"{output} also holds {len(kept)} case(s) of another run that --force would not replace ({names}); "
            "remove them or use another --output folder"
        )


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
    """Write cases ``start .. start+count-1`` into ``output`` and a ``dataset.json`` describing the folder."""
    if count < 1:
        raise LandmarkFileError("--count must be at least 1")
    if workers < 1:
        raise LandmarkFileError("--workers must be at least 1")
    options = options or PhantomOptions()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    _check_other_runs(output, seed, options, range(start, start + count), force)
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
    present = sorted(_case_folders(output))  # all of this run now: earlier cases, resumed or extended, and these
    summary = {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "synthetic": True,
        "seed": seed,
        "first_index": present[0],
        "last_index": present[-1],
        "count": len(present),
        "options": asdict(options),
    }
    dataset_path = output / DATASET_FILE
    text = json.dumps(summary, indent=1) + "\n"
    if not dataset_path.is_file() or dataset_path.read_text(encoding="utf-8") != text:
        with atomic_output(dataset_path, force=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return {
        **summary,
        "written": sorted(r["name"] for r in results),
        "skipped_existing": skipped,
        "seconds_per_case": [r["seconds"] for r in results],
    }


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="case", desc="phantom", disable=not enabled)
