"""`landmarkinit run --cases` after an interruption: case names stay inside --output-dir, an unfinished case is
redone (its leftover temporaries removed), a finished one keeps its verdict unless its inputs changed, a failed case
leaves no folder, the pool workers die with the batch, Ctrl-C stops it cleanly, and a batch killed at chosen moments
resumes to the complete result (the small version of `make crash-test`, Testing/stress/kill_batch.py)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import SimpleITK as sitk

from LandmarkInitLib.cli import main
from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.output_files import REPORT_JSON_FILE, RUN_FILES, atomic_output, temporary_files
from LandmarkInitLib.pipeline.batch import read_cases
from LandmarkInitLib.resources import default_model_card, sample_case_dir
from stress.kill_batch import (
    COMMAND,
    any_temporary,
    crash_test,
    descendants,
    kill_after,
    start,
    temporaries,
    wait_gone,
)

MODELS = default_model_card("mr").parent
# the shipped global stages (tens of milliseconds a volume) and a QA threshold that flags every result for review
FAST = ["--mr-model", MODELS / "mr_landmarks_g2l-global.json", "--us-model", MODELS / "us_landmarks_g2l-global.json"]


@pytest.fixture
def batch(tmp_path):
    """Two cases (own copies of the sample volumes) in a CSV, and a function running the batch in-process."""
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps({"thresholds": {"fre_mm": 1e-6}}))
    rows = []
    for name in ("a", "b"):
        (tmp_path / "in" / name).mkdir(parents=True)
        for volume in ("mr.nrrd", "us.nrrd"):
            shutil.copyfile(sample_case_dir() / volume, tmp_path / "in" / name / volume)
        rows.append({"case": name, "mr": f"in/{name}/mr.nrrd", "us": f"in/{name}/us.nrrd"})
    cases = write_csv(tmp_path / "cases.csv", rows)
    out = tmp_path / "out"

    def run(*extra):
        return main(
            ["run", "--cases", str(cases), "-o", str(out), "--qa-thresholds", str(qa), "--quiet"]
            + [str(a) for a in (*FAST, *extra)]
        )

    return cases, out, run


def write_csv(path: Path, rows) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case", "mr", "us"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def summary(out: Path) -> dict:
    return json.loads((out / "batch_summary.json").read_text())


def leave_temporary(path: Path) -> Path:
    """A temporary of ``path`` as a process killed while writing it leaves it (named by the real writer)."""
    with atomic_output(path, force=True) as tmp:
        tmp.write_bytes(b"half a file")
        os.link(tmp, path.parent / "kept")
    return (path.parent / "kept").rename(tmp)


def test_case_names_must_be_plain_folder_names(tmp_path, capsys):
    volume = sample_case_dir() / "us.nrrd"
    for name in ("../escape", str(tmp_path / "absolute"), "a/b", "a\\b", "..", ".", "", "batch_summary.json"):
        cases = write_csv(tmp_path / "cases.csv", [{"case": name, "mr": "missing.nrrd", "us": volume}])
        with pytest.raises(LandmarkFileError, match="is not a plain folder name"):
            read_cases(cases)
    cases = write_csv(tmp_path / "cases.csv", [{"case": "../escape", "mr": "missing.nrrd", "us": volume}])
    assert main(["run", "--cases", str(cases), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    assert "case name '../escape' is not a plain folder name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.csv"]  # nothing written, inside or outside


def test_an_unfinished_case_is_redone_and_its_temporaries_removed(batch, capsys):
    cases, out, run = batch
    assert run() == 3
    # as a kill while writing leaves it: some files, a temporary, no report.json; and a file of the user's
    (out / "a" / REPORT_JSON_FILE).unlink()
    (out / "a" / "report.html").unlink()
    temporary = leave_temporary(out / "a" / "report.html")
    (out / "a" / "notes.txt").write_text("mine")
    before = (out / "b" / REPORT_JSON_FILE).read_bytes()
    assert run() == 3, capsys.readouterr()
    outcomes = {o["case"]: o for o in summary(out)["outcomes"]}
    assert outcomes["a"]["status"] == "review" and "resumed" not in outcomes["a"]
    assert outcomes["b"]["resumed"] is True and (out / "b" / REPORT_JSON_FILE).read_bytes() == before
    assert not temporary.exists() and temporary_files(out / "a", RUN_FILES) == []
    assert (out / "a" / "notes.txt").read_text() == "mine"
    report = json.loads((out / "a" / REPORT_JSON_FILE).read_text())
    assert all((out / "a" / name).is_file() for name in report["files"])
    # the same with --force, and a temporary of the summary: nothing left over
    leave_temporary(out / "a" / "mr_to_us.h5")
    leave_temporary(out / "batch_summary.json")
    assert run("--force") == 3
    assert not any_temporary(out)
    # a report.json that does not parse marks an unfinished case too
    (out / "b" / REPORT_JSON_FILE).write_text('{"quality": ')
    assert run() == 3
    assert [o.get("resumed", False) for o in summary(out)["outcomes"]] == [True, False]
    json.loads((out / "b" / REPORT_JSON_FILE).read_text())


def test_a_resumed_batch_keeps_the_verdicts_and_the_exit_status(batch, capsys):
    cases, out, run = batch
    assert run() == 3
    first = summary(out)
    capsys.readouterr()
    assert run() == 3  # flagged results stay flagged
    printed = capsys.readouterr().out
    again = summary(out)
    assert again["counts"] == {"ok": 0, "review": 2, "failed": 0, "resumed": 2, "redone": 0}
    assert [(o["case"], o["status"], o["flags"]) for o in again["outcomes"]] == [
        (o["case"], o["status"], o["flags"]) for o in first["outcomes"]
    ]
    assert printed.startswith(
        "2 cases: 0 ok, 2 flagged for review, 0 failed; 2 of them earlier results, not recomputed"
    )
    assert "  review a (earlier result): the fit residual (FRE) is large" in printed


def test_a_case_whose_inputs_changed_is_redone(batch, tmp_path, capsys):
    cases, out, run = batch
    assert run() == 3
    mr = tmp_path / "in" / "a" / "mr.nrrd"
    image = sitk.ReadImage(str(mr))
    image.SetOrigin([c + 5.0 for c in image.GetOrigin()])  # the same size, other content
    sitk.WriteImage(image, str(mr))
    old = json.loads((out / "b" / REPORT_JSON_FILE).read_text())
    del old["inputs"]["fingerprints"]  # as release 0.1 wrote it
    (out / "b" / REPORT_JSON_FILE).write_text(json.dumps(old))
    capsys.readouterr()
    assert run() == 3
    outcomes = {o["case"]: o for o in summary(out)["outcomes"]}
    assert outcomes["a"]["redone"] == f"inputs changed since the earlier result (MR volume {mr} differs); redone"
    assert outcomes["b"]["redone"] == "the earlier result does not record its inputs; redone"
    printed = capsys.readouterr().out
    assert f"  redone a: inputs changed since the earlier result (MR volume {mr} differs); redone" in printed
    assert "2 redone (inputs or settings changed)" in printed
    report = json.loads((out / "a" / REPORT_JSON_FILE).read_text())
    fingerprint = report["inputs"]["fingerprints"]["mr"]
    assert report["inputs"]["mr"] == str(mr) and fingerprint["size"] == mr.stat().st_size
    assert fingerprint["sha256"] == __import__("hashlib").sha256(mr.read_bytes()).hexdigest()
    assert fingerprint["mtime_ns"] == mr.stat().st_mtime_ns
    # another file under the case name, and another setting: redone too
    write_csv(cases, [{"case": "a", "mr": "in/b/mr.nrrd", "us": "in/a/us.nrrd"}])
    assert run("--weighting", "none") == 3
    redone = summary(out)["outcomes"][0]["redone"]
    assert redone.startswith("inputs changed since the earlier result (MR is now ") and "in/b/mr.nrrd, was " in redone
    assert run() == 3
    assert summary(out)["outcomes"][0]["redone"] == "settings changed since the earlier result (weighting); redone"
    assert run("--mr-model", MODELS / "mr_landmarks_dsnt-dist.json") == 3
    assert summary(out)["outcomes"][0]["redone"] == "settings changed since the earlier result (MR model); redone"


def test_one_pair_run_over_an_earlier_result(tmp_path, capsys):
    """An unfinished folder (no report.json) is refused without --force: files of these names may be the user's
    (Save in Slicer writes three of them). --force removes the earlier report.json before writing anything, so that
    an interrupted rewrite never looks complete, and the temporaries a killed run left."""
    sample, out = sample_case_dir(), tmp_path / "out"
    pair = ["run", "--mr", sample / "mr.nrrd", "--us", sample / "us.nrrd", "-o", out, *FAST]
    assert main(list(map(str, pair))) in (0, 3)
    (out / REPORT_JSON_FILE).unlink()
    assert main(list(map(str, pair))) == 2
    assert "already holds results (mr_landmarks.mrk.json" in capsys.readouterr().err
    leave_temporary(out / "mr_to_us.h5")
    assert main(list(map(str, [*pair, "--force"]))) in (0, 3)
    assert temporary_files(out, RUN_FILES) == [] and (out / REPORT_JSON_FILE).is_file()
    proc = subprocess.Popen([COMMAND, *map(str, pair), "--force"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert kill_after(proc, out, 0.0, on_write=True) is not None  # SIGKILL as the first new file is written
    assert not (out / REPORT_JSON_FILE).exists()


def test_a_failed_case_leaves_no_folder_and_a_folder_of_the_users_stays(batch, tmp_path):
    cases, out, run = batch
    write_csv(cases, [{"case": n, "mr": "missing.nrrd", "us": "in/a/us.nrrd"} for n in ("new", "users")])
    (out / "users").mkdir(parents=True)
    (out / "users" / "notes.txt").write_text("mine")
    assert run() == 1
    assert sorted(p.name for p in out.iterdir()) == ["batch_summary.json", "users"]
    assert [p.name for p in (out / "users").iterdir()] == ["notes.txt"]
    assert summary(out)["counts"]["failed"] == 2


def eight_cases(tmp_path) -> Path:
    sample = sample_case_dir()
    rows = [{"case": f"k{i}", "mr": sample / "mr.nrrd", "us": sample / "us.nrrd"} for i in range(8)]
    return write_csv(tmp_path / "cases.csv", rows)


def wait_for_workers(proc, count=2, timeout=30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(workers := descendants(proc.pid)) >= count:
            return workers
        time.sleep(0.02)
    raise AssertionError(f"the batch did not start {count} workers")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_workers_die_with_the_batch(tmp_path, sig):
    proc = start(eight_cases(tmp_path), tmp_path / "out", 2, tmp_path / "log", FAST)
    workers = wait_for_workers(proc)
    time.sleep(0.5)  # the workers are busy with a case, or blocked on the pipe between cases
    os.kill(proc.pid, sig)
    proc.wait()
    left = wait_gone(workers, timeout=5.0)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "pool workers outlived the batch"


def test_ctrl_c_stops_the_whole_batch_cleanly(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [COMMAND, "run", "--cases", eight_cases(tmp_path), "-o", out, "--workers", "2", *FAST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",  # the progress bar's block characters, whatever the locale
        start_new_session=True,
        # as from a terminal: a shell's background job (CI started with `&`) passes SIGINT on ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    workers = wait_for_workers(proc)
    # Ctrl-C while a case's file is being written (not the batch summary, written once every case is done)
    while proc.poll() is None and not any(t.parent != out for t in temporaries(out)):
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal does: the whole process group
    stdout, stderr = proc.communicate(timeout=30)
    left = wait_gone(workers, timeout=5.0)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1] == (
        "landmarkinit run: interrupted; finished cases are kept, run the same command again to do the rest"
    )
    assert "Traceback" not in stderr and left == []
    assert not any_temporary(out)
    for folder in out.iterdir():  # only finished cases are left, whole
        report = json.loads((folder / REPORT_JSON_FILE).read_text())
        assert sorted(p.name for p in folder.iterdir()) == sorted(report["files"])


@pytest.mark.slow
def test_a_batch_killed_at_chosen_moments_resumes_to_the_complete_result(tmp_path):
    """SIGKILL of the batch's parent at start-up, and twice while a file is being written."""
    figures = crash_test(tmp_path, 0, 2, 2, moments=[0.4, "write", "write"], log=lambda _: None)
    assert figures["problems"] == []
    assert figures["kills"] == 3 and figures["episodes"] == 1  # (a file may be renamed before the kill lands)
