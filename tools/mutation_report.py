"""Mutation testing of the core modules with mutmut (`make mutate`); not run in CI.

    python tools/mutation_report.py prepare   # with the project venv: scratch venv + scratch work tree
    (cd build/mutate && ../mutate-venv/bin/mutmut run --max-children 2)
    build/mutate-venv/bin/python tools/mutation_report.py report   # writes docs/mutation-testing.md

prepare: build/mutate-venv is a venv of its own that holds only mutmut and its dependencies (constrained to the
versions in requirements/lock.txt) and sees the project's .venv through a .pth file, so the pinned project
environment is never changed and no lock file needs re-resolving. build/mutate/ is a fresh copy of the working tree
(tracked and untracked-but-not-ignored files, uncommitted edits included) with a `src` link to LandmarkInit/ (mutmut
3 puts only the root and src/ of the tree it runs in on sys.path) and Testing/mutation/mutmut.cfg as setup.cfg.

report: reads mutmut's results in build/mutate/mutants/, matches every mutant that was not killed against the
reviewed explanations in Testing/mutation/equivalent_mutants.toml (keyed by module, function and the exact removed /
added source lines, never by mutant number, which shifts when a function is edited), writes the page and exits
non-zero when the score (killed / all mutants) is below the target or a mutant that was not killed is unexplained.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT_VERSION = "3.8.1"
WORK_TREE = ROOT / "build" / "mutate"
VENV = ROOT / "build" / "mutate-venv"
CONFIG = ROOT / "Testing" / "mutation" / "mutmut.cfg"
EQUIVALENTS = ROOT / "Testing" / "mutation" / "equivalent_mutants.toml"
OUTPUT = ROOT / "docs" / "mutation-testing.md"
COPIED = ("LandmarkInit", "LandmarkInitResearch", "Testing", "Resources", "pyproject.toml")
TARGET_SCORE = 90.0
STARTED_FILE = "started"  # in the work tree: start time of the run (seconds since the epoch)

# mutmut's outcome names; these mean the tests noticed the mutant ("segfault": the mutant crashed the test process,
# e.g. by handing None to a VTK or ITK method, or made a C++ library abort; counted as killed; "timeout": the tests
# ran into mutmut's CPU limit), every other outcome needs an explanation
DETECTED = ("killed", "segfault", "timeout", "caught by type check")
# mutmut names the mutants of a method x<sep>Class<sep>method__mutmut_N with this separator (written "|" in docstrings
# and on the page)
METHOD_SEPARATOR = "\u01c1"


# --- prepare ------------------------------------------------------------------------------------------------------


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_state(venv: Path) -> str | None:
    """``"<mutmut version> <python X.Y>"`` of the mutmut venv, None if it does not work."""
    python = _venv_python(venv)
    if not python.exists():
        return None
    code = "import sys, importlib.metadata as m; print(m.version('mutmut'), '%d.%d' % sys.version_info[:2])"
    r = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def prepare_venv(venv: Path) -> None:
    wanted = f"{MUTMUT_VERSION} {sys.version_info[0]}.{sys.version_info[1]}"  # same Python as the project venv
    if _venv_state(venv) == wanted:
        return
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(_venv_python(venv))
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    project_site = sysconfig.get_paths()["purelib"]  # this script runs with the project venv's python
    # addsitedir (not a bare path line) so that the project venv's own .pth files, among them the editable install of
    # landmarkinit, are processed too; the mutate venv's own packages come first on sys.path
    Path(purelib, "zz_project_venv.pth").write_text(f"import site; site.addsitedir({project_site!r})\n")
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "requirements" / "lock.txt"),
            f"mutmut=={MUTMUT_VERSION}",
        ],
        check=True,
    )
    if _venv_state(venv) != wanted:
        sys.exit(f"installing mutmut {MUTMUT_VERSION} into {venv} failed")


def working_tree_files() -> list[str]:
    """Tracked files and untracked files that are not ignored, as they are now in the working tree."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *COPIED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({f for f in out.split("\0") if f and (ROOT / f).is_file()})


def prepare_work_tree(work_tree: Path) -> None:
    shutil.rmtree(work_tree, ignore_errors=True)
    work_tree.mkdir(parents=True)
    for name in working_tree_files():
        target = work_tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    (work_tree / "src").symlink_to("LandmarkInit", target_is_directory=True)
    shutil.copy2(CONFIG, work_tree / "setup.cfg")
    (work_tree / STARTED_FILE).write_text(f"{time.time()}\n")


# --- report -------------------------------------------------------------------------------------------------------


def split_mutant_name(name: str) -> tuple[str, str]:
    """``LandmarkInitLib.fit.live.x|LiveRegistration|update__mutmut_3`` -> (``LandmarkInitLib.fit.live``,
    ``LiveRegistration.update``)."""
    mangled = name.partition("__mutmut_")[0]
    module, _, key = mangled.rpartition(".")
    if key.startswith("x" + METHOD_SEPARATOR):
        _, cls, func = key.split(METHOD_SEPARATOR)
        return module, f"{cls}.{func}"
    return module, key[2:]


def changed_lines(diff: str) -> tuple[str, str]:
    """The removed and the added lines of a mutant's unified diff, each stripped, joined by newlines."""
    removed, added = [], []
    for line in diff.splitlines():
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith("-"):
            removed.append(line[1:].strip())
        elif line.startswith("+"):
            added.append(line[1:].strip())
    return "\n".join(removed), "\n".join(added)


def load_explanations(path: Path) -> dict[tuple[str, str, str, str], str]:
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    explanations = {}
    for entry in data.get("equivalent", []):
        key = (entry["module"], entry["function"], entry["removed"].strip(), entry["added"].strip())
        if key in explanations:
            sys.exit(f"{path}: {key} is explained twice")
        if not entry.get("reason", "").strip():
            sys.exit(f"{path}: {key} has no reason")
        explanations[key] = " ".join(entry["reason"].split())
    return explanations


def decorated_functions() -> list[str]:
    """Functions of the mutated files that mutmut leaves alone because they are decorated (run in the work tree)."""
    import ast

    from mutmut.utils.file_utils import walk_mutatable_files

    found = []
    for path in walk_mutatable_files():
        module = str(path)[: -len(".py")].replace(os.sep, ".").removeprefix("src.")
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        scopes = [(None, tree.body)] + [(n.name, n.body) for n in tree.body if isinstance(n, ast.ClassDef)]
        for cls, body in scopes:
            for node in body:
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                names = [ast.unparse(d) for d in node.decorator_list]
                if names and not set(names) <= {"staticmethod", "classmethod"}:
                    qualname = f"{cls}.{node.name}" if cls else node.name
                    found.append(f"{module}.{qualname} (@{', @'.join(names)})")
    return sorted(found)


def collect_results() -> list[dict]:
    """Every mutant of the configured files with its outcome and diff (run in the work tree)."""
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code
    from mutmut.utils.file_utils import walk_mutatable_files

    results = []
    for path in walk_mutatable_files():
        data = SourceFileMutationData(path=path)
        data.load()
        for name, exit_code in data.exit_code_by_key.items():
            module, function = split_mutant_name(name)
            # mutmut calls a test process killed by SIGABRT (a C++ abort, e.g. in Slicer's reader) "suspicious";
            # like its "segfault", the mutant crashed the tests
            status = "segfault" if exit_code == -signal.SIGABRT else status_by_exit_code[exit_code]
            row = {"name": name, "module": module, "function": function, "status": status, "path": str(path)}
            if status not in DETECTED:
                row["diff"] = get_diff_for_mutant(name, path=path)
                row["removed"], row["added"] = changed_lines(row["diff"])
            results.append(row)
    return results


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


def render(results, explanations, *, version, date, duration_s, target, decorated=()):
    """The page, whether it passes, the problems, and the explanations that matched no mutant."""
    by_module = defaultdict(list)
    for r in results:
        by_module[r["module"]].append(r)
    used = set()
    problems = []
    for r in results:
        if r["status"] == "segfault":
            r["status"], r["crashed"] = "killed", True
        if r["status"] in DETECTED:
            continue
        key = (r["module"], r["function"], r["removed"], r["added"])
        r["reason"] = explanations.get(key)
        if r["reason"] is None:
            problems.append(f"not explained: {r['name']} ({r['status']})")
        else:
            used.add(key)
    stale = sorted(set(explanations) - used)

    columns = ("killed", "survived", "no tests", "timeout")
    lines = [
        "# Mutation testing",
        "",
        f"Generated by `make mutate` on {date} with mutmut {version} (tools/mutation_report.py); do not edit by hand.",
        "",
        "mutmut changes the core modules one small edit at a time (a `<` into `<=`, a constant, an argument dropped, "
        "a string changed, ...) and runs the tests that reach the changed function; a mutant the tests do not notice "
        "is a behaviour the suite does not pin down. `make mutate` runs it over the modules below (about "
        f"{duration_s / 60:.0f} minutes on this project's 2-core machine; not in CI, where `make test` runs) and fails "
        f"when the score (killed / all mutants) is below {target:g} % or a mutant that was not killed has no "
        "explanation.",
        "",
        "A mutant that survives is either killed by a new or tighter test, or explained as *equivalent* in "
        "Testing/mutation/equivalent_mutants.toml: its behaviour cannot be told apart from the original's by any "
        'caller (never "the tests do not check it"). Explanations are keyed by module, function and the exact '
        "removed and added source lines of the mutant (`mutmut show NAME` in build/mutate/), not by mutant number, so "
        "they survive edits elsewhere in the function. Only in-process tests are selected (Testing/mutation/"
        "mutmut.cfg): a test that runs the `landmarkinit` command in a subprocess runs the original code.",
        "",
        "Working on survivors: `make mutate` copies the working tree (uncommitted edits included) to build/mutate/ "
        "and starts afresh each time. Look at a mutant with `cd build/mutate && ../mutate-venv/bin/mutmut show NAME` "
        "(method mutants are named with U+01C1 where this page shows `|`). Kill it with an in-process test in the "
        "module's test file whose expected values are worked out independently of the code under test, or, when no "
        "caller can tell the difference, add an entry with the removed and added lines and the reason to "
        "Testing/mutation/equivalent_mutants.toml. A new core module goes into `only_mutate` and its tests into "
        "`pytest_add_cli_args_test_selection` of Testing/mutation/mutmut.cfg. mutmut does not mutate decorated "
        "functions (other than static and class methods): wrap instead where the body matters, as "
        "`atomic_output = contextlib.contextmanager(_atomic_output)` in io/output_files.py.",
        "",
        "| module | mutants | " + " | ".join(columns) + " | score |",
        "|---|---:|" + "---:|" * len(columns) + "---:|",
    ]
    totals = Counter()
    for module in sorted(by_module):
        counts = Counter(r["status"] for r in by_module[module])
        n = len(by_module[module])
        totals.update(counts)
        totals["all"] += n
        lines.append(
            f"| {module} | {n} | " + " | ".join(str(counts[c]) for c in columns) + f" | {_pct(counts['killed'], n)} |"
        )
    other = {s: c for s, c in totals.items() if s not in (*columns, "all")}
    lines.append(
        f"| **all** | **{totals['all']}** | "
        + " | ".join(f"**{totals[c]}**" for c in columns)
        + f" | **{_pct(totals['killed'], totals['all'])}** |"
    )
    lines.append("")
    crashed = sum(bool(r.get("crashed")) for r in results)
    if crashed:
        lines += [
            f"Killed includes {crashed} mutants that crashed the test process (e.g. None handed to a VTK method).",
            "",
        ]
    if other:
        lines += ["Other outcomes: " + ", ".join(f"{s}: {c}" for s, c in sorted(other.items())) + ".", ""]
    not_killed = [r for r in results if r["status"] not in DETECTED]
    explained = sum(r["reason"] is not None for r in not_killed)
    score = 100.0 * totals["killed"] / totals["all"] if totals["all"] else 0.0
    lines += [
        f"Overall score: **{score:.1f} %** (target {target:g} %). Mutants not killed: {len(not_killed)}, of which "
        f"{explained} explained as equivalent and {len(not_killed) - explained} not explained. Killed among the "
        f"mutants not explained as equivalent: {_pct(totals['killed'], totals['all'] - explained)}.",
        "",
    ]
    if score < target:
        problems.append(f"score {score:.1f} % is below the target {target:g} %")
    if decorated:
        lines += [
            "Not mutated, because mutmut skips decorated functions: " + "; ".join(f"`{d}`" for d in decorated) + ".",
            "",
        ]
    if not_killed:
        lines += ["## Mutants not killed", ""]
        for module in sorted(by_module):
            rows = [r for r in by_module[module] if r["status"] not in DETECTED]
            if not rows:
                continue
            lines += [f"### {module}", ""]
            for r in sorted(rows, key=lambda r: (r["function"], int(r["name"].rpartition("_")[2]))):
                name = r["name"].rpartition(".")[2].replace(METHOD_SEPARATOR, "|")  # the page stays ASCII
                body = "\n".join(
                    line for line in r["diff"].splitlines() if not line.startswith(("---", "+++", "@@"))
                ).strip("\n")
                # only the changed lines and a line of context either side
                keep = [i for i, line in enumerate(body.splitlines()) if line.startswith(("-", "+"))]
                body_lines = body.splitlines()
                shown = [body_lines[i] for i in range(len(body_lines)) if any(abs(i - k) <= 1 for k in keep)]
                lines += [
                    f"`{r['function']}` ({r['status']}, `{name}`):",
                    "",
                    "```diff",
                    *shown,
                    "```",
                    "",
                    f"Equivalent: {r['reason'].rstrip('.')}." if r["reason"] else "**NOT EXPLAINED**",
                    "",
                ]
    if stale:
        lines += [
            "## Explanations that matched no mutant",
            "",
            "These entries of Testing/mutation/equivalent_mutants.toml no longer describe a surviving mutant "
            "(the code changed or a test now kills it); remove them:",
            "",
            *[f"- {m} `{f}`: `{rem}` -> `{add}`" for m, f, rem, add in stale],
            "",
        ]
    text = "\n".join(lines).rstrip() + "\n"
    # ASCII only: the docs are read with the locale's encoding, which is ASCII once a test has set the C locale
    return text.encode("ascii", "backslashreplace").decode("ascii"), not problems, problems, stale


def report(args) -> int:
    from importlib.metadata import version

    work_tree = Path(args.work_tree).resolve()
    explanations = load_explanations(Path(args.equivalents).resolve())
    output = Path(args.output).resolve()
    started = work_tree / STARTED_FILE
    results_written = [p.stat().st_mtime for p in (work_tree / "mutants").rglob("*.meta")]  # the last one: the end
    duration = max(results_written) - float(started.read_text()) if started.exists() and results_written else 0.0
    os.chdir(work_tree)  # mutmut reads its configuration and results relative to the current directory
    results = collect_results()
    decorated = decorated_functions()
    if not results:
        print(f"no mutmut results in {work_tree / 'mutants'}; run `make mutate`", file=sys.stderr)
        return 1
    text, ok, problems, stale = render(
        results,
        explanations,
        version=version("mutmut"),
        date=datetime.date.today().isoformat(),
        duration_s=duration,
        target=args.target,
        decorated=decorated,
    )
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}: " + next(line for line in text.splitlines() if line.startswith("Overall score")))
    for module, function, removed, _added in stale:
        print(
            f"mutation testing: explanation matches no mutant (remove it): {module} {function}: {removed!r}",
            file=sys.stderr,
        )
    for p in problems[:30]:
        print(f"mutation testing: {p}", file=sys.stderr)
    if len(problems) > 30:
        print(f"mutation testing: ... and {len(problems) - 30} more (see {output})", file=sys.stderr)
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="create the mutmut venv (if needed) and a fresh scratch work tree")
    p.add_argument("--work-tree", default=str(WORK_TREE))
    p.add_argument("--venv", default=str(VENV))
    r = sub.add_parser("report", help="write the report page from mutmut's results (run with the mutmut venv)")
    r.add_argument("--work-tree", default=str(WORK_TREE))
    r.add_argument("--equivalents", default=str(EQUIVALENTS))
    r.add_argument("--output", default=str(OUTPUT))
    r.add_argument("--target", type=float, default=TARGET_SCORE)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare_venv(Path(args.venv).resolve())
        prepare_work_tree(Path(args.work_tree).resolve())
        return 0
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
