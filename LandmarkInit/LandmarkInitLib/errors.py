"""Exceptions with messages meant for the user: what was wrong, and what to do about it."""


class LandmarkInitError(Exception):
    """Base class: the message is complete and can be shown to a user as it is."""


class InvalidPointsError(LandmarkInitError, ValueError):
    """Point sets that cannot be fitted: too few, non-finite, mismatched, collinear, coincident."""


class LandmarkLabelError(LandmarkInitError, ValueError):
    """Landmark labels that are missing, duplicated or unknown."""


class LandmarkFileError(LandmarkInitError, OSError):
    """A landmark, transform or volume file that is missing, unreadable or of an unknown format."""


class LockedPointError(LandmarkInitError):
    """An attempt to move a landmark the user has locked."""


class IntensityRegistrationError(LandmarkInitError):
    """Intensity (MI) registration that could not run from its starting transform, e.g. no overlap."""
