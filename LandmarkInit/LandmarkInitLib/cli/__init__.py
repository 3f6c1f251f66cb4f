"""The ``landmarkinit`` command: clinical commands (:mod:`.clinical`) first, then the command groups that other
installed packages register under the ``landmarkinit.commands`` entry-point group (the research bench,
LandmarkInitResearch.cli). The product never imports the research bench; the command line finds it this way.

Exit status: 0 success, 2 bad usage or bad input (the message says what and what to do), 1 unexpected failure
(for `run --cases`: at least one case failed), 3 `run` finished but a result is flagged for review, 130
`run --cases` stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from LandmarkInitLib import __version__
from LandmarkInitLib.errors import LandmarkInitError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_REVIEW = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # the shell's status of a command stopped by Ctrl-C (128 + SIGINT)
ENTRY_POINT_GROUP = "landmarkinit.commands"
# Packages of the optional extras (pyproject.toml), for a clear message when a command needs one that is missing.
OPTIONAL_PACKAGES = {
    **dict.fromkeys(("torch", "monai", "onnx"), "train"),
    **dict.fromkeys(("trame", "trame_slicer"), "app"),
}


@dataclass(frozen=True)
class CommandGroup:
    """Sub-commands listed together in ``--help``. ``add_commands(subparsers)`` adds them (each sets ``func``) and
    returns ``(name, one-line summary)`` per command, in the order to list them."""

    title: str
    add_commands: Callable[[argparse._SubParsersAction], list[tuple[str, str]]]


def command_groups() -> tuple[list[CommandGroup], list[str]]:
    """The command groups, and a note for each registered group that could not be loaded (the clinical commands
    must keep working on a partial or broken install)."""
    from LandmarkInitLib.cli.clinical import COMMANDS

    groups, problems = [COMMANDS], []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        try:
            groups.append(ep.load())
        except Exception as e:  # an installed plugin that fails to import must not take the clinical commands down
            problems.append(f"{ep.name} commands could not be loaded ({type(e).__name__}: {e})")
    return groups, problems


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landmarkinit",
        description="Landmark-based initialization of MR-to-ultrasound prostate registration.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", help="one of the commands below; `landmarkinit COMMAND --help` for more"
    )
    sub.required = True
    sections = []
    groups, problems = command_groups()
    for group in groups:
        listed = group.add_commands(sub)
        width = max(len(name) for name, _ in listed)
        sections.append(f"{group.title}:\n" + "\n".join(f"  {name:<{width}}  {summary}" for name, summary in listed))
    parser.epilog = "\n\n".join(sections + problems)
    return parser


def quiet_vtk() -> None:
    """VTK/MRML log their own multi-line errors to stderr; the command line reports problems itself."""
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_vtk()
    try:
        return args.func(args)
    except LandmarkInitError as e:
        print(f"landmarkinit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as e:
        package = (e.name or "").split(".")[0]
        if package not in OPTIONAL_PACKAGES:
            raise
        extra = OPTIONAL_PACKAGES[package]
        print(
            f"landmarkinit {args.command}: error: this command needs {package}: pip install 'landmarkinit[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
