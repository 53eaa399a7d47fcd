"""Errors a user can act on. The CLI turns any `SnnError` into one line on stderr and exit 2."""


class SnnError(Exception):
    """Bad input or a missing prerequisite; the message says what to do."""


class DataError(SnnError):
    """A data set is missing, truncated or in the wrong format."""


class FrameError(SnnError):
    """Bytes that are not a valid frame; parsing never raises anything else."""


class BundleError(SnnError):
    """A bundle file that is not a bundle, is corrupt, or was made for another codec/version."""
