"""MR + US volumes in, landmarks + transform + quality check + report out: ``initialize`` (detect on both, fit;
the one entry point the session, ``run`` and the batch share), quality control, one pair (``run``), many pairs
(``batch``), and the report files."""


def __getattr__(name: str):
    """Release 0.1's module LandmarkInitLib.pipeline is now LandmarkInitLib.pipeline.run (until the next release)."""
    if name in ("run_case", "overlap_fraction", "check_output_dir", "read_image", "RunResult", "render_html"):
        from LandmarkInitLib import _renamed
        from LandmarkInitLib.pipeline import run

        _renamed.warn_renamed(f"LandmarkInitLib.pipeline.{name}", f"LandmarkInitLib.pipeline.run.{name}")
        return getattr(run, name)
    raise AttributeError(f"module 'LandmarkInitLib.pipeline' has no attribute {name!r}")
