"""The research bench of LandmarkInit: the synthetic phantom, training and export of detectors, their evaluation,
and the experiment runner. Never installed into Slicer; it imports the product library (LandmarkInitLib), which
never imports it. Its `landmarkinit` sub-commands are in :mod:`.cli`."""
