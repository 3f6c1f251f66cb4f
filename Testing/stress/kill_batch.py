"""Crash test of `landmarkinit run --cases`: kill the batch at random moments, resume it, and check that it always
ends with the complete set of results.

A cases CSV is made from the shipped sample case (each case its own copy of the volumes, plus one case whose MR is
missing, which must fail). The batch runs in a subprocess and its parent process is killed with SIGKILL after a
random delay spread over a whole run (every third time: as soon as a new temporary file appears, that is while a
file is being written); its pool workers must die with it. Every fourth kill, if strace is installed, is strace's:
it kills (SIGKILL) each process of the batch at its N-th rename, so a worker dies with a whole temporary file not
yet in place (the parent then records its cases as failed), or the parent as it puts batch_summary.json in place.
The batch is then run again (resumed); after five kills it is left to finish, the result is verified and a fresh
output folder starts the next episode. Checked after every kill: no process of the batch is left, every file under
a final name loads. At the end of every episode: every case has all its files (json parses, png reads, the markups
and transforms load with Slicer's readers), no temporary file is left anywhere, the failing case left no folder,
batch_summary.json lists every case with the status its report.json gives, and the exit status matches.

    python Testing/stress/kill_batch.py --kills 25        (make crash-test)
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from LandmarkInitLib.io.output_files import BATCH_SUMMARY_FILE, REPORT_JSON_FILE, RUN_FILES, temporary_files
from LandmarkInitLib.resources import sample_case_dir

COMMAND = shutil.which("landmarkinit", path=os.path.dirname(sys.executable)) or "landmarkinit"
STRACE = shutil.which("strace")
RENAMES = "rename,renameat,renameat2"  # os.replace; the last step of every file written
BROKEN = "broken"


def make_cases(work: Path, count: int) -> Path:
    """CSV of ``count`` copies of the sample case (distinct files) and one case with a missing MR volume."""
    sample = sample_case_dir()
    rows = []
    for i in range(count):
        folder = work / "inputs" / f"case_{i:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("mr.nrrd", "us.nrrd"):
            shutil.copyfile(sample / name, folder / name)
        rows.append({"case": f"case_{i:02d}", "mr": folder / "mr.nrrd", "us": folder / "us.nrrd"})
    rows.append({"case": BROKEN, "mr": work / "inputs" / "missing_mr.nrrd", "us": rows[0]["us"]})
    path = work / "cases.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case", "mr", "us"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def start(cases: Path, out: Path, workers: int, log: Path, extra=(), prefix=()) -> subprocess.Popen:
    args = [*prefix, COMMAND, "run", "--cases", cases, "-o", out, "--workers", str(workers), "--quiet", *extra]
    with log.open("w") as f:  # its own session: the kill below reaches the parent only, as `kill -9 PID` would
        return subprocess.Popen(list(map(str, args)), stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def alive(pid: int) -> bool:
    """Running (a zombie is dead: nothing reaps it when its parent was killed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def session_processes(sid: int) -> list[int]:
    """Processes still running in the batch's session (the orphans, if its workers outlive it)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session
            found.append(int(stat.parent.name))
    return found


def describe(pid: int) -> str:
    """What a process that should be gone is doing."""
    try:
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
    except (OSError, ValueError):
        return f"{pid} (gone)"
    fields = ", ".join(f"{k} {status.get(k, '?').strip()}" for k in ("State", "PPid", "SigPnd", "ShdPnd", "SigIgn"))
    return f"{pid} ({fields}, wchan {wchan}: {command})"


def wait_gone(pids, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def temporaries(out: Path) -> set[Path]:
    folders = [out, *(p for p in out.iterdir() if p.is_dir())] if out.is_dir() else []
    return {t for f in folders for t in temporary_files(f, RUN_FILES + (BATCH_SUMMARY_FILE,))}


def any_temporary(out: Path) -> bool:
    return bool(temporaries(out))


def snapshot(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*")} if out.exists() else {}


def phase(before: dict, after: dict, seconds: float, startup: float) -> str:
    """What the batch was doing when it was killed, from what this run changed in the output folder."""
    changed = [p for p, t in after.items() if before.get(p) != t and p.is_file()]
    if any(p in temporary_files(p.parent, RUN_FILES + (BATCH_SUMMARY_FILE,)) for p in changed):
        return "writing a file"
    unfinished = {p.parent for p in changed if p.name in RUN_FILES and not (p.parent / REPORT_JSON_FILE).exists()}
    if unfinished:
        return "between the files of a case"
    if any(p.name == BATCH_SUMMARY_FILE for p in changed):
        return "after the cases"
    return "starting up" if seconds < startup else "computing a case"


def check_file(context, path: Path) -> str | None:
    """None if ``path`` is a whole file of its kind, else what is wrong."""
    import SimpleITK as sitk

    from LandmarkInitLib.io.markups import read_landmarks_file
    from LandmarkInitLib.io.transforms import load_transform

    try:
        if path.name.endswith(".mrk.json"):
            read_landmarks_file(context, path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".h5":
            load_transform(context, path)
        elif path.suffix == ".png":
            sitk.ReadImage(str(path))
        elif path.suffix == ".html":
            if not path.read_text(encoding="utf-8").rstrip().endswith("</html>"):
                return f"{path} is truncated"
    except Exception as e:
        return f"{path} does not load ({type(e).__name__}: {e})"
    return None


def check_final_names(out: Path) -> list[str]:
    """Every file under a final name is whole (checked after each kill)."""
    from LandmarkInitLib.io.scene import create_context

    context = create_context()
    try:
        paths = [p / n for p in out.iterdir() if p.is_dir() for n in RUN_FILES if (p / n).exists()]
        paths += [out / BATCH_SUMMARY_FILE] if (out / BATCH_SUMMARY_FILE).exists() else []
        return [problem for p in paths if (problem := check_file(context, p))]
    finally:
        context.clear()


def verify(out: Path, cases_csv: Path, returncode: int) -> list[str]:
    """Problems of a finished batch (an empty list: complete and true)."""
    from LandmarkInitLib.io.images import volume_fingerprint
    from LandmarkInitLib.pipeline.batch import read_cases

    specs = read_cases(cases_csv)
    problems = check_final_names(out)
    if any_temporary(out) or list(out.rglob("*.tmp-*")):
        problems.append(f"temporary files left: {sorted(str(p) for p in out.rglob('*.tmp-*'))}")
    summary = json.loads((out / BATCH_SUMMARY_FILE).read_text())
    status = {o["case"]: o["status"] for o in summary["outcomes"]}
    if sorted(status) != sorted(s.name for s in specs):
        problems.append(f"the summary lists {sorted(status)}")
    expected = {n for n in RUN_FILES if n != "mr_to_us_landmarks.h5"}
    verdicts = []
    for spec in specs:
        folder = out / spec.name
        if spec.name == BROKEN:
            verdicts.append("failed")
            if folder.exists():
                problems.append(f"the failing case left {folder}")
            if status.get(spec.name) != "failed":
                problems.append(f"{spec.name}: summary says {status.get(spec.name)}, expected failed")
            continue
        present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        if present != expected:
            problems.append(f"{folder} holds {sorted(present)}")
            continue
        report = json.loads((folder / REPORT_JSON_FILE).read_text())
        verdict = "review" if report["quality"]["review_recommended"] else "ok"
        verdicts.append(verdict)
        if status.get(spec.name) != verdict:
            problems.append(f"{spec.name}: summary says {status.get(spec.name)}, report.json says {verdict}")
        if report["inputs"]["fingerprints"]["mr"]["sha256"] != volume_fingerprint(spec.mr)["sha256"]:
            problems.append(f"{spec.name}: report.json records another MR volume")
    want = 1 if "failed" in verdicts else (3 if "review" in verdicts else 0)
    if returncode != want:
        problems.append(f"exit status {returncode}, expected {want}")
    return problems


def full_run_seconds(cases: Path, work: Path, workers: int) -> tuple[float, float]:
    """Seconds of a whole run, and until its first case folder appears (the start-up)."""
    out = work / "calibration"
    t0, startup = time.monotonic(), None
    proc = start(cases, out, workers, work / "calibration.log")
    while proc.poll() is None:
        if startup is None and out.is_dir() and any(p.is_dir() for p in out.iterdir()):
            startup = time.monotonic() - t0
        time.sleep(0.01)
    seconds = time.monotonic() - t0
    shutil.rmtree(out)
    return seconds, startup or seconds


def kill_after(proc: subprocess.Popen, out: Path, delay: float, on_write: bool, sig=signal.SIGKILL) -> list[int] | None:
    """Send ``sig`` to the batch's parent ``delay`` s after its start, or when the first temporary file appears (when
    ``on_write``; leftovers of an earlier kill do not count); returns the processes it had started (its workers), or
    None if it ended first."""
    t0, seen, leftovers = time.monotonic(), set(), temporaries(out)
    while proc.poll() is None:
        seen.update(descendants(proc.pid))
        if (on_write and temporaries(out) - leftovers) or (not on_write and time.monotonic() - t0 >= delay):
            os.kill(proc.pid, sig)
            proc.wait()
            return sorted(seen)
        time.sleep(0.002 if on_write else 0.01)
    return None


def strace_kill(cases: Path, out: Path, workers: int, log: Path, n: int) -> tuple[subprocess.Popen, list[int]]:
    """Run the batch under strace, which kills (SIGKILL) every process of it at its ``n``-th rename: a worker with a
    whole temporary file written but not yet in place, or the parent as it puts batch_summary.json in place."""
    inject = ["-e", f"trace={RENAMES}", "-e", f"inject={RENAMES}:signal=SIGKILL:when={n}"]
    proc = start(cases, out, workers, log, prefix=[STRACE, "-f", "-qq", "-o", "/dev/null", *inject])
    seen = set()
    while proc.poll() is None:
        seen.update(descendants(proc.pid))
        time.sleep(0.01)
    return proc, sorted(seen)


def crash_test(
    work: Path,
    kills: int,
    workers: int,
    count: int,
    seed: int = 0,
    log=print,
    moments=None,
    per_episode: int = 5,
    strace_every: int = 4,
) -> dict:
    """``moments``: the kills' moments instead of random ones: seconds after the start, or "write" (at the first
    temporary file). After ``per_episode`` kills the batch is left to finish, and verified. Every ``strace_every``-th
    kill is strace's (see strace_kill; 0: none)."""
    rng = random.Random(seed)
    cases = make_cases(work, count)
    if moments is None:
        full, startup = full_run_seconds(cases, work, workers)
        log(f"a whole run of {count + 1} cases with {workers} workers: {full:.1f} s ({startup:.1f} s start-up)")
    else:
        kills, full, startup = len(moments), None, 0.8
    figures = {"kills": 0, "episodes": 0, "runs": 0, "phases": collections.Counter(), "problems": [], "full_run": full}
    episode, out, t0 = 0, None, time.monotonic()
    while figures["kills"] < kills or out is not None:
        if out is None:
            episode, episode_kills = episode + 1, 0
            out = work / f"episode_{episode:02d}"
        if moments is None:
            on_write, delay = figures["kills"] % 3 == 2, rng.uniform(0.0, full)
        elif figures["kills"] < kills:
            on_write, delay = moments[figures["kills"]] == "write", moments[figures["kills"]]
        before = snapshot(out)
        t_start = time.monotonic()
        figures["runs"] += 1
        kill = figures["kills"] < kills and (moments is not None or episode_kills < per_episode)
        log_file = work / f"episode_{episode:02d}.log"
        if kill and moments is None and STRACE and strace_every and figures["kills"] % strace_every == strace_every - 1:
            n = rng.randint(1, 6)
            proc, workers_seen = strace_kill(cases, out, workers, log_file, n)
            summary = out / BATCH_SUMMARY_FILE
            worker_died = summary.exists() and "worker process died" in summary.read_text()
            if proc.returncode == -signal.SIGKILL or worker_died:
                figures["kills"] += 1
                episode_kills += 1
                who = "the parent" if proc.returncode == -signal.SIGKILL else "a worker"
                where = f"strace: {who} killed at its rename {n}"
                figures["phases"][where.split(" at its")[0]] += 1
                orphans = [f"process {p} outlived the batch" for p in wait_gone(workers_seen)]
                problems = orphans + check_final_names(out)
                figures["problems"] += [f"kill {figures['kills']}: {p}" for p in problems]
                log(f"kill {figures['kills']:2d} (episode {episode}): {where}")
                continue
        else:
            proc = start(cases, out, workers, log_file)
            workers_seen = kill_after(proc, out, delay, on_write) if kill else None
        if workers_seen is not None and proc.returncode == -signal.SIGKILL:
            figures["kills"] += 1
            episode_kills += 1
            where = phase(before, snapshot(out), time.monotonic() - t_start, startup)
            figures["phases"][where] += 1
            orphans = sorted(set(wait_gone(workers_seen) + wait_gone(session_processes(proc.pid), 1.0)))
            if orphans:
                what = "; ".join(map(describe, orphans))
                late = wait_gone(orphans, 30.0)
                figures["problems"].append(
                    f"kill {figures['kills']}: processes outlived the batch by 5 s: {what}; "
                    + (f"still running 30 s later: {late}" if late else "gone within 30 s")
                )
                for pid in late:
                    os.kill(pid, signal.SIGKILL)
            problems = check_final_names(out) if out.exists() else []
            figures["problems"] += [f"kill {figures['kills']}: {p}" for p in problems]
            how = "at the first temporary file" if on_write else f"after {delay:.2f} s"
            log(f"kill {figures['kills']:2d} (episode {episode}, {how}): {where}")
            continue
        returncode = proc.wait()
        problems = verify(out, cases, returncode)
        figures["problems"] += [f"episode {episode}: {p}" for p in problems]
        figures["episodes"] += 1
        log(f"episode {episode} complete after {figures['runs']} runs: {'OK' if not problems else problems}")
        out = None
    figures["seconds"] = time.monotonic() - t0
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cases", type=int, default=5, help="copies of the sample case (plus one failing case)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-episode", type=int, default=5, help="kills before a batch is left to finish")
    parser.add_argument("--strace-every", type=int, default=4, help="every Nth kill is strace's at a rename (0: none)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--output", type=Path, help="also write the figures as a Markdown page (docs/crash-test.md)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kill_batch_") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        figures = crash_test(
            work,
            args.kills,
            args.workers,
            args.cases,
            args.seed,
            per_episode=args.per_episode,
            strace_every=args.strace_every,
        )
    phases = ", ".join(f"{n} {p}" for p, n in figures["phases"].most_common())
    print(
        f"{figures['kills']} kills ({phases}) in {figures['runs']} runs, {figures['episodes']} episodes resumed to "
        f"completion, {figures['seconds']:.0f} s: {'all checks passed' if not figures['problems'] else 'PROBLEMS'}"
    )
    for problem in figures["problems"]:
        print(f"  {problem}")
    if args.output:
        args.output.write_text(render(figures, args), encoding="utf-8")
    return 1 if figures["problems"] else 0


def render(figures, args) -> str:
    rows = "\n".join(f"| {phase} | {n} |" for phase, n in figures["phases"].most_common())
    verdict = (
        "all checks passed"
        if not figures["problems"]
        else "PROBLEMS:\n\n" + "\n".join(f"- {p}" for p in figures["problems"])
    )
    strace = f"every {args.strace_every}th kill by strace at a rename" if STRACE and args.strace_every else "no strace"
    return f"""# Crash test of `landmarkinit run --cases`

Generated by `make crash-test` (`Testing/stress/kill_batch.py`, whose docstring says what is killed and what is
checked): {args.cases} copies of the sample case plus one failing case, {args.workers} workers, up to
{args.per_episode} kills per episode before the batch is left to finish, {strace}, seed {args.seed}.

Result: {figures["kills"]} kills in {figures["runs"]} runs, {figures["episodes"]} episodes resumed to completion,
{figures["seconds"]:.0f} s: {verdict}.

| where the kill landed | kills |
| --- | --- |
{rows}
"""


if __name__ == "__main__":
    sys.exit(main())
