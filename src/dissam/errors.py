"""Exception types. Every error a user can cause derives from :class:`DisSamError`, and its
message says what was wrong and what to do about it."""

from __future__ import annotations


class DisSamError(Exception):
    """Base class of dissam's user-facing errors."""


class CheckpointError(DisSamError):
    """A checkpoint is missing, truncated, unsafe, or does not match the model."""


class ImageReadError(DisSamError):
    """An image or mask file cannot be read or has an unsupported layout."""


class BoxError(DisSamError, ValueError):
    """A box prompt is malformed, inverted, empty or entirely outside the image."""


class PointError(DisSamError, ValueError):
    """A point prompt is malformed (not ``N x 2``, labels other than 0/1, outside the image) or is
    given to a stage 1 that cannot take points."""


class DatasetError(DisSamError):
    """A dataset folder is missing files or has files that do not pair up."""


class OfflineError(DisSamError):
    """Something has to be downloaded, but the machine is offline (or the hub refused)."""


class TrainingError(DisSamError):
    """Training cannot go on: a non-finite loss, a bad configuration for the data, a broken resume state."""


class DownloadError(DisSamError):
    """A model file could not be downloaded (HTTP error, interrupted transfer, or a source that
    has to be fetched by hand); the message says what to do."""


class VerificationError(CheckpointError):
    """A model file does not match its registry entry (size, checksum, or key set and shapes)."""


class NoMatchError(DisSamError):
    """A text prompt found no instance above the score threshold."""
