"""LandmarkInit in the browser: the detect / nudge / save workflow as a trame-slicer web app.

Runs outside Slicer only (it imports trame); the Slicer module never imports this package. Start it with
``landmarkinit app`` (see :mod:`.server`).
"""
