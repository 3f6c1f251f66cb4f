"""LandmarkInit library: landmark-based initialization of MR-to-US prostate registration.

Qt-free; importable inside 3D Slicer and from a plain Python with slicer-core. The data flow reads from the
package layout: io (scene, volumes, markups, transforms, files) -> detection (model card, model grid, detectors:
volume -> landmarks in RAS) -> fit (landmarks -> MR_to_US, live re-solve, MI refinement) -> session (the
interactive workflow of the Slicer module and the browser app) and pipeline (detect both + fit, QA, one pair,
batch, reports). cli and app are the front ends that run outside Slicer. ``landmarks``, ``geometry`` and
``fit.landmark_fit`` import neither slicer nor vtk.
"""

__version__ = "0.2.0"

from LandmarkInitLib import _renamed  # noqa: E402

_renamed.install()
