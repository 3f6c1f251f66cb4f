"""A montage of MR and US slices through each landmark of a case, for judging the phantom at a glance.

Slices are world-aligned (RAS) sagittal and axial planes through the landmark, 80 mm wide, resampled at
0.4 mm with linear interpolation; the landmark is drawn as a cross, the gland mask as a contour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.io.datasets import gland_mask, open_dataset
from LandmarkInitLib.landmarks import LANDMARK_LABELS, MODALITY_COLORS, landmark_by_label

PLANES = {  # in-plane axes (horizontal, vertical) in RAS, as radiologists display them
    "sagittal": (np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0])),  # anterior on the left
    "axial": (np.array([-1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),  # patient right on the left, anterior up
}


def sample_plane(array, geometry: VolumeGeometry, centre, axes, half_width=40.0, step=0.4, order=1):
    h, v = axes
    t = np.arange(-half_width, half_width + 1e-9, step)
    hh, vv = np.meshgrid(t, t[::-1])
    ras = centre[None, :] + hh.reshape(-1, 1) * h[None, :] + vv.reshape(-1, 1) * v[None, :]
    ijk = geometry.ras_to_ijk_points(ras)
    values = ndimage.map_coordinates(array.astype(np.float32), ijk[:, ::-1].T, order=order, mode="constant", cval=0.0)
    return values.reshape(hh.shape)


def write_preview(case_dir, output, *, title_note: str = "synthetic phantom, not patient data") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    case = open_dataset(case_dir)[0]
    rows = []
    for modality in ("mr", "us"):
        image = sitk.ReadImage(str(case.images[modality]))
        array = sitk.GetArrayFromImage(image)
        geometry = VolumeGeometry.from_sitk_image(image)
        mask, mask_geometry = gland_mask(case, modality)
        lo, hi = np.percentile(array[array > 0], [1, 99.5]) if np.any(array > 0) else (0, 1)
        for plane, axes in PLANES.items():
            rows.append((modality, plane, array, geometry, mask, mask_geometry, axes, (lo, hi)))

    fig, axs = plt.subplots(len(rows), len(LANDMARK_LABELS), figsize=(3.2 * len(LANDMARK_LABELS), 3.2 * len(rows)))
    for r, (modality, plane, array, geometry, mask, mask_geometry, axes, (lo, hi)) in enumerate(rows):
        points = case.landmarks(modality)
        for c, label in enumerate(LANDMARK_LABELS):
            ax = axs[r, c]
            centre = points.point(label)
            ax.imshow(
                sample_plane(array, geometry, centre, axes), cmap="gray", vmin=lo, vmax=hi, extent=(-40, 40, -40, 40)
            )
            gland = sample_plane(mask, mask_geometry, centre, axes, order=0)
            if gland.any():
                ax.contour(
                    np.flipud(gland), levels=[0.5], colors=["#2ca02c"], linewidths=0.8, extent=(-40, 40, -40, 40)
                )
            # other landmarks near this plane (within 3 mm) are drawn smaller
            for other in LANDMARK_LABELS:
                rel = points.point(other) - centre
                if other != label and abs(rel @ np.cross(*axes)) < 3.0:
                    ax.plot(rel @ axes[0], rel @ axes[1], "+", color=MODALITY_COLORS[modality], ms=7, mew=1.2)
            ax.plot(0, 0, "x", color=MODALITY_COLORS[modality], ms=12, mew=2.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(landmark_by_label(label).display_name)
            if c == 0:
                ax.set_ylabel(f"{modality.upper()} {plane}")
    meta = case.meta
    fig.suptitle(f"{case.name}: {meta.get('probe', '')} probe, {title_note}", fontsize=11)
    fig.tight_layout()
    output = Path(output)
    fig.savefig(output, dpi=90)
    plt.close(fig)
    return output
