"""Synthetic paired prostate MR / TRUS phantom with exact ground truth (runs outside Slicer: scipy, matplotlib).

anatomy (shapes, landmarks) -> mr / ultrasound (image formation) -> case (pairing, ground truth) -> write
(dataset layout) -> generator (parallel, deterministic); preview (montage PNG).
"""
