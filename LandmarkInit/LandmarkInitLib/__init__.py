"""LandmarkInit library: landmark-based initialization of MR-to-US prostate registration.

Qt-free; importable inside 3D Slicer and from a plain Python with slicer-core. The pure-numpy modules
(``landmarks``, ``landmark_set``, ``geometry``, ``registration``) import neither slicer nor vtk; the MRML
modules (``scene``, ``markups_io``, ``transform_io``, ``volume_io``, ``live_update``) need slicer-core or
the Slicer application.
"""

__version__ = "0.1.0"
