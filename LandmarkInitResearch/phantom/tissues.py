"""Tissue classes of the phantom and their imaging properties.

MR values are T2-weighted signal in arbitrary units (urine and fat bright, peripheral zone bright,
transition zone intermediate and heterogeneous, muscle, stroma and capsule dark, air and calcification void),
after the qualitative contrasts of clinical prostate T2w MRI. US values are relative backscattered power
(echogenicity, 0 = anechoic; urine and cysts ~55 dB below the gland) and attenuation (dB/cm/MHz) at a
nominal 7 MHz transrectal probe. Each case perturbs them (``sample_properties``) so that no absolute
intensity identifies a structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    BACKGROUND = 0  # pelvic connective tissue
    FAT = 1
    MUSCLE = 2
    BONE = 3
    RECTAL_WALL = 4
    RECTAL_LUMEN = 5
    BLADDER_WALL = 6
    URINE = 7
    SEMINAL_VESICLE = 8
    PERIPHERAL_ZONE = 9
    TRANSITION_ZONE = 10
    STROMA = 11  # anterior fibromuscular stroma
    URETHRA = 12
    CAPSULE = 13
    CYST = 14
    CALCIFICATION = 15
    BPH_NODULE = 16


GLAND_TISSUES = (
    Tissue.PERIPHERAL_ZONE,
    Tissue.TRANSITION_ZONE,
    Tissue.STROMA,
    Tissue.URETHRA,
    Tissue.CAPSULE,
    Tissue.CYST,
    Tissue.CALCIFICATION,
    Tissue.BPH_NODULE,
)

# tissue: (MR T2 signal, US echogenicity, US attenuation dB/cm/MHz)
NOMINAL = {
    Tissue.BACKGROUND: (300.0, 0.6, 0.7),
    Tissue.FAT: (700.0, 2.0, 0.6),
    Tissue.MUSCLE: (210.0, 0.25, 1.0),
    Tissue.BONE: (330.0, 8.0, 15.0),
    Tissue.RECTAL_WALL: (200.0, 0.8, 0.8),
    Tissue.RECTAL_LUMEN: (25.0, 0.0001, 0.2),
    Tissue.BLADDER_WALL: (190.0, 2.5, 0.8),
    Tissue.URINE: (950.0, 1e-06, 0.02),
    Tissue.SEMINAL_VESICLE: (760.0, 0.15, 0.3),
    Tissue.PERIPHERAL_ZONE: (620.0, 0.7, 0.6),
    Tissue.TRANSITION_ZONE: (340.0, 0.3, 0.6),
    Tissue.STROMA: (150.0, 0.25, 0.9),
    Tissue.URETHRA: (470.0, 0.05, 0.4),
    Tissue.CAPSULE: (140.0, 3.0, 0.9),
    Tissue.CYST: (880.0, 1e-06, 0.02),
    Tissue.CALCIFICATION: (30.0, 20.0, 40.0),
    Tissue.BPH_NODULE: (420.0, 0.5, 0.6),
}

N_TISSUES = len(Tissue)

# A case's MR tissue labels (Tissue values on the MR grid), beside the case files of datasets.CASE_FILES that
# detection and evaluation need: training reads them, when present, for per-tissue random intensities.
TISSUES_FILE = "mr_tissues.nrrd"


@dataclass(frozen=True)
class TissueProperties:
    mr: np.ndarray  # per tissue label
    us_echo: np.ndarray
    us_atten: np.ndarray


def sample_properties(rng: np.random.Generator, variation: float = 0.15) -> TissueProperties:
    """Per-case tissue properties: each nominal value times an independent log-normal factor."""
    nominal = np.array([NOMINAL[t] for t in Tissue])
    factors = np.exp(rng.normal(0.0, variation, nominal.shape))
    values = nominal * factors
    return TissueProperties(
        mr=values[:, 0].astype(np.float32),
        us_echo=values[:, 1].astype(np.float32),
        us_atten=nominal[:, 2].astype(np.float32) * factors[:, 2].astype(np.float32),
    )
