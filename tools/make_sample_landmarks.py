"""Write the small landmark pair used by `make demo` (Resources/SampleData/landmarks/).

Hand-chosen MR landmark positions for a typical gland (RAS mm), mapped to US by a known rigid transform
plus 0.7 mm (SD, per axis) of simulated placement noise, fixed seed. The known transform is stored beside
the files (truth.json) so the demo's output can be checked against it. Regenerate with:

    .venv/bin/python tools/make_sample_landmarks.py --force
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from LandmarkInitLib.fit.landmark_fit import apply_transform
from LandmarkInitLib.io.markups import write_landmarks
from LandmarkInitLib.io.scene import create_context
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet

OUT = Path(__file__).resolve().parents[1] / "Resources" / "SampleData" / "landmarks"
MR_POINTS = np.array([[1.0, 12.0, -62.0], [0.5, 18.0, -28.0], [0.0, -2.0, -45.0]])  # apex, bladder neck, post. median
EULER_XYZ_DEG = (15.0, 5.0, -8.0)
TRANSLATION = (12.0, -35.0, 20.0)
NOISE_SD_MM = 0.7
SEED = 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="overwrite the existing files")
    args = parser.parse_args()
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_euler("xyz", EULER_XYZ_DEG, degrees=True).as_matrix()
    truth[:3, 3] = TRANSLATION
    noise = np.random.default_rng(SEED).normal(0.0, NOISE_SD_MM, MR_POINTS.shape)
    us_points = apply_transform(truth, MR_POINTS) + noise
    ctx = create_context()
    OUT.mkdir(parents=True, exist_ok=True)
    write_landmarks(ctx, LandmarkSet(LANDMARK_LABELS, MR_POINTS), OUT / "mr_landmarks.mrk.json", "mr", force=args.force)
    write_landmarks(ctx, LandmarkSet(LANDMARK_LABELS, us_points), OUT / "us_landmarks.mrk.json", "us", force=args.force)
    (OUT / "truth.json").write_text(
        json.dumps(
            {
                "description": "synthetic sample: US landmarks = known rigid transform of MR landmarks + noise",
                "mr_to_us_ras": np.round(truth, 12).tolist(),
                "euler_xyz_deg": EULER_XYZ_DEG,
                "noise_sd_mm": NOISE_SD_MM,
                "seed": SEED,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
