"""Image and mask files <-> arrays (with ``_imagefile``, the only place OpenCV's BGR order exists).

Images come back as (H, W, 3) uint8 RGB and masks as (H, W) bool. Every file is
read once; its format is identified by content (never by the file name) from
the header, which is also used to refuse oversized images and to detect
truncated JPEG/PNG files before anything is decoded. Anything skinseg will not
convert silently raises a subclass of :class:`skinseg.errors.ImageFileError`
(with ``path`` set) or :class:`skinseg.errors.InvalidMaskError`; every message
names the file and says how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ._checks import as_bool_mask, check_positive_int, check_rgb_image
from ._files import atomic_write
from ._imagefile import (
    ISIC_BINARY_LEVEL,
    PathLike,
    _check_not_empty,
    _decode,
    _encode,
    _fspath,
    _parse_header,
    _read_bytes,
    _to_mask,
    _to_rgb,
)
from ._listing import ENTRY_KINDS, ImageScan, _check_folder, scan_entries, scan_images
from ._types import BinaryMask, RGBImage
from .errors import ArgumentTypeError, ConfigError

__all__ = [
    "read_image",
    "read_image_bytes",
    "read_mask",
    "read_mask_file",
    "MaskFile",
    "MaskLevels",
    "ISIC_BINARY_LEVEL",
    "write_image",
    "write_mask",
    "encode_image",
    "encode_mask",
    "image_size",
    "list_images",
    "scan_images",
    "scan_entries",
    "ENTRY_KINDS",
    "ImageScan",
    "read_file",
    "pair_images_and_masks",
]

DEFAULT_MAX_PIXELS = 200_000_000


# ----------------------------------------------------------------------------- public readers


def read_image(path: PathLike, *, convert: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> RGBImage:
    """Read a JPEG, PNG, BMP or TIFF file as an RGB uint8 image.

    Parameters
    ----------
    path : str or os.PathLike
        The image file. Its format is identified from its content, not its name.
    convert : bool, default False
        Allow two documented, data-independent conversions: 16-bit images are
        scaled to 8 bits with ``np.rint(v / 257)``, and grayscale images have
        their channel replicated into R, G and B. Without it both raise.
    max_pixels : int, default 200_000_000
        Largest width * height accepted, checked on the header before decoding
        (guard against decompression bombs).

    Returns
    -------
    image : ndarray, shape (H, W, 3), dtype uint8
        C-contiguous RGB image, with the EXIF orientation applied.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        The path does not exist or is a folder.
    EmptyFileError, NotAnImageError, TruncatedImageError, CorruptImageError, ImageTooLargeError
        The file cannot be read as an image (each names the file; ``err.path`` is set).
    BitDepthError
        Float pixels, other integer types, or 16-bit without ``convert=True``.
    GrayscaleImageError
        A grayscale (or grayscale + alpha) image without ``convert=True``.
    AlphaChannelError
        An alpha channel that is not fully opaque (also with ``convert=True``).

    Notes
    -----
    A fully opaque alpha channel is dropped, which is lossless. JPEG files are
    complete iff an EOI marker follows the last SOS marker and PNG files iff
    they contain the IEND chunk; OpenCV would otherwise decode a cut JPEG with
    a grey bottom. EXIF orientation (tag 0x0112) is read from the header and
    applied with numpy, matching ``PIL.ImageOps.exif_transpose``; unreadable
    EXIF metadata is ignored.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "lesion.png"
    >>> write_image(path, image)
    >>> bool((read_image(path) == image).all())
    True
    """
    max_pixels = check_positive_int(max_pixels, "max_pixels")
    data = _read_bytes(path)
    arr, header = _decode(data, path, max_pixels=max_pixels)
    return _to_rgb(data, arr, header, path, convert=convert)


def read_image_bytes(
    data: bytes, *, name: str = "<bytes>", convert: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> RGBImage:
    """:func:`read_image` for a file's bytes already in memory (object storage, an archive, a request).

    The same decoder, checks and conversions as :func:`read_image`, so the same bytes give the
    same pixels and the same errors; ``name`` (e.g. the file's URI) stands for the path in the
    error messages and in ``err.path``.

    Raises
    ------
    TypeError
        ``data`` is not bytes.
    EmptyFileError, NotAnImageError, TruncatedImageError, CorruptImageError, ImageTooLargeError,
    BitDepthError, GrayscaleImageError, AlphaChannelError
        As for :func:`read_image`.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((4, 6, 3), np.uint8)
    >>> read_image_bytes(encode_image(image), name="s3://bucket/a.png").shape
    (4, 6, 3)
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ArgumentTypeError(f"`data` must be the file's bytes; got a {type(data).__name__}.")
    max_pixels = check_positive_int(max_pixels, "max_pixels")
    data = _check_not_empty(bytes(data), name)
    arr, header = _decode(data, name, max_pixels=max_pixels)
    return _to_rgb(data, arr, header, name, convert=convert)


MaskLevels = Literal["empty", "0/1", "0/255", "0/max", "grey>128"]
"""How a mask file stored its lesion pixels (see :func:`read_mask_file`)."""


@dataclass(frozen=True)
class MaskFile:
    """A mask read by :func:`read_mask_file`: the mask, how the file stored it, and the file."""

    mask: BinaryMask
    """(H, W) bool, True for lesion, EXIF orientation applied."""
    levels: MaskLevels
    """``"empty"`` (all zero), ``"0/1"`` (1 = lesion), ``"0/255"``, ``"0/max"`` (16-bit {0, 65535})
    or ``"grey>128"`` (other grey levels, binarised as pixel > 128; ``binarise="isic"`` only)."""
    path: Path


def read_mask_file(
    path: PathLike,
    *,
    binarise: Literal["exact", "isic"] = "exact",
    shape: tuple[int, int] | None = None,
) -> MaskFile:
    """Read a lesion mask file and say how it stored the lesion: the one mask-value rule of skinseg.

    Parameters
    ----------
    path : str or os.PathLike
        The mask file (PNG, BMP, TIFF, JPEG).
    binarise : {"exact", "isic"}, default "exact"
        ``"exact"`` never thresholds: only {0, 1}, only {0, 255} or only {0, dtype max} are
        accepted (:func:`read_mask`). ``"isic"`` reads masks the way the ISIC challenge scorer
        does, for evaluation: the file must be 8-bit single-channel, and a mask with other grey
        levels (anti-aliased edges, JPEG) is binarised as ``pixel > 128``.
    shape : tuple of int (H, W), optional
        Expected size; a different size raises.

    Returns
    -------
    MaskFile
        ``mask`` ((H, W) bool), ``levels`` (:data:`MaskLevels`) and ``path``.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, ImageFileError
        As for :func:`read_image`.
    MaskValueError
        Values outside the rule below, float values, differing colour channels, transparency;
        with ``binarise="isic"`` also several channels or more than 8 bits.
    MaskShapeError
        ``shape`` is given and the mask has another size.
    ConfigError
        ``binarise`` or ``shape`` is invalid.

    Notes
    -----
    The rule, in this order, for both modes:

    1. all pixels 0: an empty mask (``"empty"``);
    2. only {0, 1}: **1 is lesion** (``"0/1"``). The ISIC scorer, which keeps ``pixel > 128``,
       reads such a file as empty; skinseg never does, and callers flag these files;
    3. only {0, 255} (or, ``"exact"`` only, {0, dtype max}): the non-zero value is lesion;
    4. ``"isic"`` only: any other values with at least one above 128 are binarised as
       ``pixel > 128``, exactly as the scorer (``"grey>128"``). Non-zero values none of which is
       above 128 (e.g. {0, 100} or {0, 1, 2}) are ambiguous and raise :class:`MaskValueError`;
    5. ``"exact"``: any other values raise.

    The EXIF orientation tag is applied (the ISIC scorer ignores it; ISIC masks carry none).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.png"
    >>> _ = cv2.imwrite(str(path), np.eye(3, dtype=np.uint8))  # values {0, 1}
    >>> read_mask_file(path).levels, int(read_mask_file(path).mask.sum())
    ('0/1', 3)
    """
    if binarise not in ("exact", "isic"):
        raise ConfigError(
            f"`binarise` must be 'exact' or 'isic'; got {binarise!r}. Use 'isic' for evaluation."
        )
    if shape is not None:
        if not isinstance(shape, tuple | list) or len(shape) != 2:
            raise ConfigError(f"`shape` must be an (H, W) pair; got {shape!r}. Pass image.shape[:2].")
        shape = (check_positive_int(shape[0], "shape[0]"), check_positive_int(shape[1], "shape[1]"))
    data = _read_bytes(path)
    arr, header = _decode(data, path, max_pixels=DEFAULT_MAX_PIXELS)
    mask, levels = _to_mask(data, arr, header, path, shape, binarise)
    return MaskFile(mask, levels, Path(_fspath(path)))  # type: ignore[arg-type]


def read_mask(path: PathLike, *, shape: tuple[int, int] | None = None) -> BinaryMask:
    """Read a binary lesion mask file as an (H, W) bool array.

    Parameters
    ----------
    path : str or os.PathLike
        The mask file (PNG, BMP, TIFF; JPEG works only if its values are exact).
    shape : tuple of int (H, W), optional
        Expected size, e.g. ``image.shape[:2]``; a different size raises.

    Returns
    -------
    mask : ndarray, shape (H, W), dtype bool
        True for lesion (any non-zero value), EXIF orientation applied.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, EmptyFileError, NotAnImageError, TruncatedImageError,
    CorruptImageError, ImageTooLargeError
        As for :func:`read_image`.
    MaskValueError
        Float values, values other than only {0, 1}, only {0, 255} or only
        {0, dtype max}, colour channels that differ, or transparent pixels.
    MaskShapeError
        ``shape`` is given and the mask has another size.

    Notes
    -----
    ``read_mask_file(path, shape=shape).mask`` (``binarise="exact"``): a {0, 1} file is read
    with 1 = lesion, as everywhere in skinseg (see :func:`read_mask_file`). 3- or 4-channel
    files are accepted when every colour channel is identical and any alpha channel is fully
    opaque; the first channel is used. No threshold is ever applied: binarise other masks
    explicitly and save them with :func:`write_mask`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> mask = np.zeros((32, 48), bool)
    >>> mask[8:20, 10:30] = True
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "lesion_mask.png"
    >>> write_mask(path, mask)
    >>> bool((read_mask(path, shape=mask.shape) == mask).all())
    True
    """
    return read_mask_file(path, shape=shape).mask


def read_file(path: PathLike) -> bytes:
    """The bytes of an image file, read once, with :func:`read_image`'s errors for a missing file, a folder and
    an empty file.

    For readers that look at a file before decoding it (its size from the header, see
    :func:`image_size`) and decode the same bytes afterwards (:func:`read_image_bytes` with
    ``name=path``): the file is read from disk once, and the pixels and errors are
    :func:`read_image`'s.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, EmptyFileError
    """
    return _read_bytes(path)


def image_size(source: PathLike | bytes, *, name: str | None = None) -> tuple[int, int]:
    """Return the (H, W) of an image file (a path, or its bytes) from its header, after EXIF orientation.

    Nothing is decoded and the truncation and size checks of :func:`read_image`
    are not made. Raises the same file errors as :func:`read_image` for empty,
    unknown or damaged headers; for bytes, ``name`` stands for the path in the messages.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
    >>> write_image(path, np.zeros((20, 30, 3), np.uint8))
    >>> image_size(path), image_size(path.read_bytes())
    ((20, 30), (20, 30))
    """
    if isinstance(source, bytes | bytearray | memoryview):
        label = name if name is not None else "<bytes>"
        header = _parse_header(_check_not_empty(bytes(source), label), label)
    else:
        header = _parse_header(_read_bytes(source), source)
    if header.orientation >= 5:
        return header.width, header.height
    return header.height, header.width


# ----------------------------------------------------------------------------- writers


def write_mask(path: PathLike, mask: np.ndarray, *, overwrite: bool = False) -> None:
    """Write a mask as an 8-bit single-channel PNG with values {0, 255}, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.png`` (any case); parent folders are created.
    mask : ndarray, shape (H, W)
        bool, or integer with values only {0, 1} or only {0, 255}. Not modified.
    overwrite : bool, default False
        Replace an existing file; without it an existing file raises.

    Raises
    ------
    InvalidMaskError
        ``mask`` is not a binary (H, W) mask (see ``skinseg._checks.as_bool_mask``).
    ConfigError
        ``path`` does not end in ``.png``.
    FileExistsError
        The file exists and ``overwrite`` is False.

    Notes
    -----
    The data goes to a hidden ``.<name>.<random>.tmp`` file in the same folder,
    is flushed and fsynced, then moved into place with ``os.replace``, so a
    reader never sees a half-written file and a failed write leaves any
    existing file untouched.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.png"
    >>> write_mask(path, np.eye(4, dtype=bool))
    >>> int(read_mask(path).sum())
    4
    """
    p = _fspath(path)
    if Path(p).suffix.lower() != ".png":
        raise ConfigError(f"`path` must end in .png (masks are stored losslessly); got '{p}'. Rename it.")
    atomic_write(p, encode_mask(mask), overwrite=overwrite)


def encode_mask(mask: np.ndarray) -> bytes:
    """The bytes :func:`write_mask` writes: an 8-bit single-channel PNG with values {0, 255}."""
    binary = as_bool_mask(mask)
    return _encode(".png", np.where(binary, np.uint8(255), np.uint8(0)), [], "mask")


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    """The bytes :func:`write_image` writes for an RGB uint8 image: PNG, or JPEG (quality 95) for ``.jpg``."""
    image = check_rgb_image(image)
    ext = ext.lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"`ext` must be .png, .jpg or .jpeg; got '{ext}'.")
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext != ".png" else []
    return _encode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params, "image")


def write_image(path: PathLike, image: np.ndarray, *, overwrite: bool = False) -> None:
    """Write an RGB uint8 image as PNG or JPEG (chosen by extension), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.png``, ``.jpg`` or ``.jpeg`` (any case); parent
        folders are created. JPEG is written with quality 95.
    image : ndarray, shape (H, W, 3), dtype uint8
        RGB image. Not modified.
    overwrite : bool, default False
        Replace an existing file; without it an existing file raises.

    Raises
    ------
    TypeError, InvalidImageError
        ``image`` is not an (H, W, 3) uint8 array.
    ConfigError
        Another extension.
    FileExistsError
        The file exists and ``overwrite`` is False.

    Notes
    -----
    Atomic in the same way as :func:`write_mask`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
    >>> write_image(path, np.zeros((4, 6, 3), np.uint8))
    >>> read_image(path).shape
    (4, 6, 3)
    """
    image = check_rgb_image(image)
    p = _fspath(path)
    ext = Path(p).suffix.lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"`path` must end in .png, .jpg or .jpeg; got '{p}'. Use one of those extensions.")
    atomic_write(p, encode_image(image, ext), overwrite=overwrite)


# ----------------------------------------------------------------------------- folders


def list_images(
    folder: PathLike, *, recursive: bool = False, exclude_suffix: str | None = None
) -> list[Path]:
    """List the image files in a folder, sorted.

    Parameters
    ----------
    folder : str or os.PathLike
        Folder to list.
    recursive : bool, default False
        Also list sub-folders (hidden folders are skipped).
    exclude_suffix : str, optional
        Leave out files whose stem ends with it, e.g. ``"_segmentation"`` when
        masks live beside the images.

    Returns
    -------
    paths : list of Path
        ``folder / relative path`` of every non-hidden file whose name ends in
        one of ``skinseg._types.IMAGE_EXTENSIONS`` (any case), sorted. Use
        :func:`scan_images` to also learn what was left out and why.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``folder`` is missing or is not a folder.
    ConfigError
        ``exclude_suffix`` is the empty string (it would exclude everything).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_image(d / "b.png", np.zeros((2, 2, 3), np.uint8))
    >>> write_mask(d / "b_mask.png", np.zeros((2, 2), bool))
    >>> [p.name for p in list_images(d, exclude_suffix="_mask")]
    ['b.png']
    """
    return scan_images(folder, recursive=recursive, exclude_suffix=exclude_suffix).images


def _by_stem(paths: list[Path], what: str) -> dict[str, Path]:
    index: dict[str, list[Path]] = {}
    for p in paths:
        index.setdefault(p.stem, []).append(p)
    dups = {s: ps for s, ps in index.items() if len(ps) > 1}
    if dups:
        shown = "; ".join(", ".join(str(p) for p in ps) for _, ps in sorted(dups.items())[:5])
        raise ConfigError(
            f"{what} must have unique file stems for pairing; got {len(dups)} duplicate stem(s): {shown}"
            f"{' ...' if len(dups) > 5 else ''}. Remove or rename the duplicates."
        )
    return {s: ps[0] for s, ps in index.items()}


def pair_images_and_masks(
    image_dir: PathLike,
    mask_dir: PathLike | None = None,
    *,
    mask_suffix: str = "_segmentation",
    recursive: bool = False,
) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    """Pair image files with mask files by stem: mask stem == image stem + ``mask_suffix``.

    Parameters
    ----------
    image_dir : str or os.PathLike
        Folder of images.
    mask_dir : str or os.PathLike, optional
        Folder of masks; None (or the same folder) means the masks live beside
        the images, and files whose stem ends with ``mask_suffix`` are masks.
    mask_suffix : str, default "_segmentation"
        ISIC: ``"_segmentation"`` (``ISIC_0000000.jpg`` <-> ``ISIC_0000000_segmentation.png``);
        a separate masks folder with the same names: ``""``; PH2: ``"_lesion"`` with
        ``recursive=True``.
    recursive : bool, default False
        Search sub-folders of both folders (pairing is still by stem only).

    Returns
    -------
    pairs : list of (Path, Path)
        (image, mask), sorted by image path.
    unmatched_images : list of Path
        Images without a mask, sorted.
    unmatched_masks : list of Path
        Mask-folder files matching no image (including, with a separate mask
        folder, files whose stem lacks ``mask_suffix``), sorted.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        A folder is missing or is a file.
    ConfigError
        Two images (or two masks) share a stem, or ``mask_suffix`` is empty while
        images and masks share a folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_image(d / "ISIC_0000001.jpg", np.zeros((4, 4, 3), np.uint8))
    >>> write_mask(d / "ISIC_0000001_segmentation.png", np.zeros((4, 4), bool))
    >>> pairs, lonely_images, lonely_masks = pair_images_and_masks(d)
    >>> [(i.name, m.name) for i, m in pairs]
    [('ISIC_0000001.jpg', 'ISIC_0000001_segmentation.png')]
    """
    if not isinstance(mask_suffix, str):
        raise ArgumentTypeError(f"`mask_suffix` must be a str; got a {type(mask_suffix).__name__}.")
    image_root = _check_folder(image_dir, "image_dir")
    same = mask_dir is None or _check_folder(mask_dir, "mask_dir").resolve() == image_root.resolve()
    if same and not mask_suffix:
        raise ConfigError(
            "`mask_suffix` must be non-empty when images and masks share a folder; got ''. "
            "Pass mask_dir= for a separate masks folder, or a suffix such as '_segmentation'."
        )
    if same:
        images = list_images(image_root, recursive=recursive, exclude_suffix=mask_suffix)
        masks = [p for p in list_images(image_root, recursive=recursive) if p.stem.endswith(mask_suffix)]
        stray: list[Path] = []
    else:
        listed = list_images(mask_dir, recursive=recursive)  # type: ignore[arg-type]
        images = list_images(image_root, recursive=recursive)
        masks = [p for p in listed if p.stem.endswith(mask_suffix)]
        stray = [p for p in listed if not p.stem.endswith(mask_suffix)]
    image_index = _by_stem(images, "Images")
    mask_index = _by_stem(masks, "Masks")
    pairs: list[tuple[Path, Path]] = []
    unmatched_images: list[Path] = []
    for stem, img in image_index.items():
        mask = mask_index.get(stem + mask_suffix)
        if mask is None:
            unmatched_images.append(img)
        else:
            pairs.append((img, mask))
    used = {m for _, m in pairs}
    unmatched_masks = [m for m in masks if m not in used] + stray
    return sorted(pairs), sorted(unmatched_images), sorted(unmatched_masks)
