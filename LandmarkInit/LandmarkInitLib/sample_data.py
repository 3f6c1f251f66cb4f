"""The shipped synthetic MR/US pair as a source of Slicer's Sample Data module (one click to try the module).

The files ship with the extension, so the "download" is a copy from a file:// URI into Slicer's cache, checked
against its SHA-256 like any other sample.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from LandmarkInitLib.resources import resources_dir, sample_case_dir

CATEGORY = "LandmarkInit"
SAMPLE_NAME = "LandmarkInitPhantomPair"
THUMBNAIL = "LandmarkInitPhantomPair.png"  # LandmarkInit/Resources/Icons


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sample_data_source(icons_dir: Path) -> dict:
    """Keyword arguments of SampleData.SampleDataLogic.registerCustomSampleDataSource for the sample pair (only
    the keywords that function accepts, Slicer 5.8-5.13)."""
    case = sample_case_dir()
    files = [case / "mr.nrrd", case / "us.nrrd"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"sample data missing from {resources_dir()}: {', '.join(missing)}")
    return {
        "category": CATEGORY,
        "sampleName": SAMPLE_NAME,
        "thumbnailFileName": str(Path(icons_dir) / THUMBNAIL),
        "uris": [f.resolve().as_uri() for f in files],
        "fileNames": ["LandmarkInitPhantom_MR.nrrd", "LandmarkInitPhantom_US.nrrd"],
        "nodeNames": ["Phantom MR", "Phantom US"],
        "checksums": [f"SHA256:{sha256(f)}" for f in files],
        "loadFileTypes": ["VolumeFile", "VolumeFile"],
    }
