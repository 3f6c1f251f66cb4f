"""Draw the Slicer module's icon (128x128) and the Sample Data thumbnail of the synthetic pair (260x280).

Run from the repository root: .venv/bin/python tools/make_module_images.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from LandmarkInitLib.landmarks import MODALITY_COLORS  # noqa: E402
from LandmarkInitLib.resources import sample_case_dir  # noqa: E402

ICONS = Path(__file__).resolve().parents[1] / "LandmarkInit" / "Resources" / "Icons"


def icon(path: Path) -> None:
    """Two landmark triangles (MR blue, US orange) joined by the fit."""
    fig = plt.figure(figsize=(1.28, 1.28), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 1), ax.set_ylim(0, 1), ax.axis("off")
    mr = np.array([[0.18, 0.25], [0.42, 0.82], [0.30, 0.48]])
    us = np.array([[0.58, 0.20], [0.86, 0.74], [0.70, 0.44]])
    for pts, colour in ((mr, MODALITY_COLORS["mr"]), (us, MODALITY_COLORS["us"])):
        ax.fill(pts[:, 0], pts[:, 1], color=colour, alpha=0.25)
        ax.scatter(pts[:, 0], pts[:, 1], s=180, color=colour, edgecolors="white", linewidths=1.5, zorder=3)
    for a, b in zip(mr, us, strict=True):
        ax.annotate("", b, a, arrowprops={"arrowstyle": "->", "color": "0.3", "lw": 1.2})
    fig.savefig(path, transparent=True)
    plt.close(fig)


def thumbnail(path: Path) -> None:
    """Mid slices of the sample MR and US (synthetic phantom)."""
    case = sample_case_dir()
    fig, axes = plt.subplots(2, 1, figsize=(2.6, 2.8), dpi=100)
    for ax, name, title in zip(axes, ("mr.nrrd", "us.nrrd"), ("MR (phantom)", "US (phantom)"), strict=True):
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(case / name)))
        ax.imshow(array[array.shape[0] // 2], cmap="gray", origin="lower")
        ax.set_title(title, fontsize=8, pad=2)
        ax.axis("off")
    fig.tight_layout(pad=0.3)
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    ICONS.mkdir(parents=True, exist_ok=True)
    icon(ICONS / "LandmarkInit.png")
    thumbnail(ICONS / "LandmarkInitPhantomPair.png")
    print(f"wrote {ICONS}/LandmarkInit.png and LandmarkInitPhantomPair.png")
