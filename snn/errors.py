"""Errors a user can act on. The CLI turns any `SnnError` into one line on stderr and exit 2.

The bottom of the project's import graph: it imports nothing of the project."""


class SnnError(Exception):
    """Bad input or a missing prerequisite; the message says what to do."""


class DataError(SnnError):
    """A data set is missing, truncated or in the wrong format."""


class FrameError(SnnError):
    """Bytes that are not a valid frame; parsing never raises anything else.

    `reason` is machine-readable (a receiver counts and answers by it, never by the message):
    "cobs" (byte framing), "length" (no reading fits the byte count), "damaged" (header beyond
    repair), "version", "kind", "fragment", "auth" (unknown device or MIC mismatch), "bad_length"
    (authenticated, but not its codec's exact length), "unmatched" (a reply to no pending request).
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class BundleError(SnnError):
    """A bundle file that is not a bundle, is corrupt, or was made for another codec/version."""
