"""Exception hierarchy of skinseg.

Every error raised on purpose by skinseg derives from :class:`SkinsegError`, so a
caller (and the CLI) can catch skinseg's own errors without hiding real bugs.
Errors about a file always name the file; every message ends with a concrete fix.

Where Python has a built-in exception for the case, skinseg's error is also that one
(:class:`PathNotFoundError` is a ``FileNotFoundError``, :class:`ArgumentTypeError` a
``TypeError``, ...), so ``except FileNotFoundError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "SkinsegError",
    "InvalidImageError",
    "ImageFileError",
    "EmptyFileError",
    "NotAnImageError",
    "TruncatedImageError",
    "CorruptImageError",
    "ImageTooLargeError",
    "UnsupportedImageError",
    "GrayscaleImageError",
    "AlphaChannelError",
    "BitDepthError",
    "InvalidMaskError",
    "MaskValueError",
    "MaskShapeError",
    "MissingPredictionError",
    "UnknownNameError",
    "ConfigError",
    "CheckpointError",
    "ArgumentTypeError",
    "PathNotFoundError",
    "PathIsFolderError",
    "PathNotFolderError",
    "OutputExistsError",
    "SkinsegWarning",
]


class SkinsegError(Exception):
    """Base class of every error skinseg raises on purpose."""


class InvalidImageError(SkinsegError, ValueError):
    """An image (array or file) that skinseg cannot use as an RGB uint8 image."""


class ImageFileError(InvalidImageError):
    """A file that could not be read as an image. ``path`` names the file."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class EmptyFileError(ImageFileError):
    """The file has zero bytes."""


class NotAnImageError(ImageFileError):
    """The file is not in an image format skinseg reads (JPEG, PNG, BMP, TIFF)."""


class TruncatedImageError(ImageFileError):
    """The file ends before the image data is complete (interrupted copy or download)."""


class CorruptImageError(ImageFileError):
    """The file looks like an image but cannot be decoded."""


class ImageTooLargeError(ImageFileError):
    """The image has more pixels than the ``max_pixels`` limit allows."""


class UnsupportedImageError(ImageFileError):
    """A valid image of a kind skinseg does not convert silently."""


class GrayscaleImageError(UnsupportedImageError):
    """A single-channel image where an RGB image is needed."""


class AlphaChannelError(UnsupportedImageError):
    """An image with a (non-opaque) alpha channel; dropping it would lose information."""


class BitDepthError(UnsupportedImageError):
    """An image that is not 8 bits per channel (e.g. 16-bit PNG or TIFF)."""


class InvalidMaskError(SkinsegError, ValueError):
    """A mask (array or file) that is not a binary lesion mask."""


class MaskValueError(InvalidMaskError):
    """A mask whose values are not only {0, 1} or only {0, 255}."""


class MaskShapeError(InvalidMaskError):
    """A mask whose size differs from its image (or from the other mask)."""


class MissingPredictionError(SkinsegError, ValueError):
    """Truth masks without a prediction in an evaluation (the ISIC scorer refuses such a submission).

    ``paths`` lists the truth files that have no prediction.
    """

    def __init__(self, message: str, paths: list | None = None) -> None:
        super().__init__(message)
        self.paths = list(paths or [])


class UnknownNameError(SkinsegError, ValueError):
    """An unknown architecture, encoder, method or model name."""


class ConfigError(SkinsegError, ValueError):
    """An invalid configuration value."""


class CheckpointError(SkinsegError, RuntimeError):
    """A checkpoint directory that is missing, incomplete or inconsistent."""


class ArgumentTypeError(SkinsegError, TypeError):
    """An argument of the wrong type (e.g. ``read_image(None)``, or a list where an array is needed)."""


class PathNotFoundError(SkinsegError, FileNotFoundError):
    """A file or folder that does not exist (also a ``FileNotFoundError``)."""


class PathIsFolderError(SkinsegError, IsADirectoryError):
    """A folder where a file is needed (also an ``IsADirectoryError``)."""


class PathNotFolderError(SkinsegError, NotADirectoryError):
    """A file where a folder is needed (also a ``NotADirectoryError``)."""


class OutputExistsError(SkinsegError, FileExistsError):
    """A file that skinseg would write exists and is not skinseg's to replace (also a ``FileExistsError``)."""


class SkinsegWarning(UserWarning):
    """A warning of skinseg's own: the work goes on in a documented way (e.g. without the export cache)."""
