"""``python -m LandmarkInitLib.cli``: the ``landmarkinit`` command (e.g. under torchrun)."""

import sys

from LandmarkInitLib.cli import main

sys.exit(main())
