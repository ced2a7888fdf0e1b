"""Image and mask files <-> arrays (the only module where OpenCV's BGR order exists).

Images come back as (H, W, 3) uint8 RGB and masks as (H, W) bool. Every file is
read once; its format is identified by content (never by the file name) from
the header, which is also used to refuse oversized images and to detect
truncated JPEG/PNG files before anything is decoded. Anything skinseg will not
convert silently raises a subclass of :class:`skinseg.errors.ImageFileError`
(with ``path`` set) or :class:`skinseg.errors.InvalidMaskError`; every message
names the file and says how to fix it.
"""

from __future__ import annotations

import io
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from ._checks import as_bool_mask, check_positive_int, check_rgb_image
from ._types import IMAGE_EXTENSIONS, BinaryMask, RGBImage
from .errors import (
    AlphaChannelError,
    BitDepthError,
    ConfigError,
    CorruptImageError,
    EmptyFileError,
    GrayscaleImageError,
    ImageTooLargeError,
    MaskShapeError,
    MaskValueError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedImageError,
)

__all__ = [
    "read_image",
    "read_mask",
    "write_image",
    "write_mask",
    "image_size",
    "list_images",
    "pair_images_and_masks",
]

PathLike = str | os.PathLike[str]

DEFAULT_MAX_PIXELS = 200_000_000
_READABLE = "JPEG, PNG, BMP and TIFF"
# Pillow format name -> skinseg format name (MPO is a JPEG with extra frames).
_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "BMP": "BMP", "TIFF": "TIFF"}
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)
# Used only when Pillow's own decompression-bomb limit refuses a header we may accept.
_PLUGINS = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
}
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # IEND always has length 0 and this CRC
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_GRAY_ALPHA_MODES = {"LA", "La"}


@dataclass(frozen=True)
class _Header:
    format: str  # "JPEG" | "PNG" | "BMP" | "TIFF"
    width: int  # as stored, before EXIF orientation
    height: int
    mode: str  # Pillow mode, e.g. "RGB", "L", "LA", "I;16"
    orientation: int  # EXIF orientation 1..8


# ----------------------------------------------------------------------------- reading helpers


def _fspath(path: object, name: str = "path") -> str:
    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"`{name}` must be a str or os.PathLike; got an object of type {type(path).__name__}."
        )
    return os.fspath(path)  # type: ignore[return-value]


def _read_bytes(path: PathLike) -> bytes:
    p = _fspath(path)
    if os.path.isdir(p):
        err: OSError = IsADirectoryError(f"'{p}' is a directory, not an image file. Pass a file inside it.")
    elif not os.path.exists(p):
        hint = f" (relative to the working directory {os.getcwd()})" if not os.path.isabs(p) else ""
        err = FileNotFoundError(f"Image file '{p}' does not exist{hint}. Check the path.")
    else:
        with open(p, "rb") as f:
            data = f.read()
        if not data:
            raise EmptyFileError(
                f"Image file '{p}' is empty (0 bytes). The copy or download failed; fetch the file again.",
                path=path,
            )
        return data
    raise err


def _sniff(data: bytes) -> str | None:
    return next((fmt for magic, fmt in _SIGNATURES if data.startswith(magic)), None)


def _jpeg_is_complete(data: bytes) -> bool:
    """Return True iff the EOI marker follows the last SOS marker of the main image.

    The header segments are walked by their lengths, so an EXIF thumbnail (a
    complete JPEG inside APP1) cannot make a file cut before the main image
    look complete.
    """
    n, pos = len(data), 2
    while True:
        if pos >= n:
            return False
        if data[pos] != 0xFF:  # malformed header: not a truncation, let decoding fail
            return True
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            return False
        marker = data[pos]
        pos += 1
        if marker == 0xDA:  # SOS of the main image
            break
        if marker == 0xD9:  # EOI before any scan: corrupt, not truncated
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            continue
        if pos + 2 > n:
            return False
        pos += int.from_bytes(data[pos : pos + 2], "big")
    last_sos = data.rfind(b"\xff\xda", pos - 2)
    return data.find(b"\xff\xd9", last_sos + 2) != -1


def _check_complete(data: bytes, fmt: str, path: PathLike) -> None:
    if fmt == "JPEG" and not _jpeg_is_complete(data):
        reason = "no end-of-image marker after the last scan"
    elif fmt == "PNG" and _PNG_IEND not in data:
        reason = "no IEND chunk"
    else:
        return
    raise TruncatedImageError(
        f"Image file '{_fspath(path)}' is truncated: the {fmt} data stops before the image is complete "
        f"({len(data):,} bytes, {reason}). The copy or download was interrupted; fetch the file again.",
        path=path,
    )


def _png_chunk(data: bytes, chunk_type: bytes) -> bytes | None:
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == chunk_type:
            return data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return None


def _open_pillow(data: bytes, fmt_hint: str | None) -> Image.Image:
    """Pillow's lazy open (header only), independent of ``Image.MAX_IMAGE_PIXELS``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning, metadata warnings: never leak
        try:
            return Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            if fmt_hint is None:
                raise
            return _PLUGINS[fmt_hint](io.BytesIO(data))


def _orientation(im: Image.Image, data: bytes, fmt: str) -> int:
    if fmt == "PNG" and "exif" not in im.info:
        # Pillow's PNG getexif() decodes the pixels to find an eXIf chunk after IDAT; do it by hand.
        im.info["exif"] = _png_chunk(data, b"eXIf") or b""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = im.getexif().get(0x0112, 1)
    except Exception:  # unreadable metadata is not an unreadable image: keep the stored orientation
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _parse_header(data: bytes, path: PathLike) -> _Header:
    p = _fspath(path)
    magic = _sniff(data)
    try:
        im = _open_pillow(data, magic)
    except Exception:
        if magic is None:
            raise NotAnImageError(
                f"Cannot read '{p}' as an image: its content is not {_READABLE} (the file name does not "
                "matter). Check that it really is an image and not text, CSV or an HTML error page; "
                "convert other formats to PNG.",
                path=path,
            ) from None
        _check_complete(data, magic, path)
        raise CorruptImageError(
            f"Cannot decode '{p}': it starts like a {magic} file but its header is damaged. "
            "Replace it with a good copy.",
            path=path,
        ) from None
    fmt = _FORMATS.get(str(im.format))
    if fmt is None:
        raise NotAnImageError(
            f"Cannot read '{p}': it is a {im.format} image and skinseg reads only {_READABLE}. "
            "Convert it to PNG first.",
            path=path,
        )
    return _Header(fmt, im.width, im.height, im.mode, _orientation(im, data, fmt))


def _check_size(header: _Header, max_pixels: int, path: PathLike) -> None:
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise ImageTooLargeError(
            f"Image file '{_fspath(path)}' is {header.width}x{header.height} = {pixels:,} pixels, more than "
            f"max_pixels={max_pixels:,} (a guard against decompression bombs). If you trust the file, "
            f"pass a larger max_pixels, e.g. max_pixels={pixels}.",
            path=path,
        )


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply one of the 8 EXIF orientations (as PIL.ImageOps.exif_transpose does)."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return arr[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr


def _decode(data: bytes, path: PathLike, *, max_pixels: int) -> tuple[np.ndarray, _Header]:
    """Header checks, completeness check, cv2 decode (BGR[A] or grey) and EXIF orientation."""
    header = _parse_header(data, path)
    _check_size(header, max_pixels, path)
    _check_complete(data, header.format, path)
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise CorruptImageError(
            f"Cannot decode '{_fspath(path)}' as a {header.format} image although its header looks valid. "
            "The file is damaged; replace it with a good copy.",
            path=path,
        )
    return _orient(arr, header.orientation), header


def _is_opaque(alpha: np.ndarray) -> bool:
    return bool(np.all(alpha == np.iinfo(alpha.dtype).max))


def _alpha_dropped_by_decoder(
    data: bytes, header: _Header, arr: np.ndarray, path: PathLike
) -> np.ndarray | None:
    """Pillow's alpha channel when OpenCV dropped it (e.g. grey+alpha TIFF); else None."""
    if header.mode not in _ALPHA_MODES or (arr.ndim == 3 and arr.shape[2] in (2, 4)):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(_open_pillow(data, header.format).getchannel("A"))
    except Exception:
        raise UnsupportedImageError(
            f"Cannot check the alpha channel of '{_fspath(path)}' (Pillow cannot decode it). "
            "Save it as an RGB PNG without alpha.",
            path=path,
        ) from None


def _transparency_error(path: PathLike, alpha: np.ndarray) -> AlphaChannelError:
    return AlphaChannelError(
        f"Image file '{_fspath(path)}' has transparent pixels in its alpha channel (alpha from {alpha.min()} "
        f"to {alpha.max()}); skinseg never drops real transparency. Flatten it yourself, e.g. with "
        "Pillow: Image.alpha_composite(Image.new('RGBA', im.size, 'white'), im.convert('RGBA'))"
        ".convert('RGB'), and save that.",
        path=path,
    )


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
    p = _fspath(path)

    if arr.dtype != np.uint8 and not (arr.dtype == np.uint16 and convert):
        hint = (
            "Pass convert=True to scale it to 8 bits with round(v / 257)."
            if arr.dtype == np.uint16
            else "Convert it to 8 bits yourself with an explicit scaling and save it as PNG."
        )
        raise BitDepthError(
            f"Image file '{p}' has {arr.dtype} pixels; skinseg works on 8-bit images. {hint}", path=path
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] not in (3, 4):
        raise UnsupportedImageError(
            f"Image file '{p}' has {arr.shape[2]} channels; skinseg reads grey, RGB or RGBA images. "
            "Save it as an RGB PNG.",
            path=path,
        )
    if arr.ndim == 3 and arr.shape[2] == 4:
        alpha: np.ndarray | None = arr[..., 3]
    else:
        alpha = _alpha_dropped_by_decoder(data, header, arr, path)
    if alpha is not None and not _is_opaque(alpha):
        raise _transparency_error(path, alpha)
    if arr.ndim == 2 or header.mode in _GRAY_ALPHA_MODES:
        if not convert:
            raise GrayscaleImageError(
                f"Image file '{p}' is grayscale; skinseg needs RGB. Pass convert=True to replicate the "
                "grey channel into R, G and B.",
                path=path,
            )
        grey = arr if arr.ndim == 2 else arr[..., 0]
        arr = np.repeat(grey[..., None], 3, axis=2)
    else:
        arr = arr[..., 2::-1]  # BGR(A) -> RGB, dropping the opaque alpha
    if arr.dtype == np.uint16:
        arr = np.rint(arr / 257).astype(np.uint8)
    return np.ascontiguousarray(arr)


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
    3- or 4-channel files are accepted when every colour channel is identical
    and any alpha channel is fully opaque; the first channel is used. No
    threshold is ever applied: binarise other masks explicitly and save them
    with :func:`write_mask`.

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
    if shape is not None:
        if not isinstance(shape, tuple | list) or len(shape) != 2:
            raise ConfigError(f"`shape` must be an (H, W) pair; got {shape!r}. Pass image.shape[:2].")
        shape = (check_positive_int(shape[0], "shape[0]"), check_positive_int(shape[1], "shape[1]"))
    data = _read_bytes(path)
    arr, header = _decode(data, path, max_pixels=DEFAULT_MAX_PIXELS)
    p = _fspath(path)
    fix = "Binarise it explicitly (e.g. arr > 127 if that is right) and save it with skinseg.write_mask."

    if not np.issubdtype(arr.dtype, np.integer):
        raise MaskValueError(
            f"Mask file '{p}' must hold integer values {{0, 1}} or {{0, 255}}; got dtype {arr.dtype}. {fix}"
        )
    if arr.ndim == 3:
        alpha = arr[..., 3] if arr.shape[2] == 4 else None
        if alpha is not None and not _is_opaque(alpha):
            raise MaskValueError(f"Mask file '{p}' has transparent pixels in its alpha channel. {fix}")
        colour = arr[..., : min(arr.shape[2], 3)]
        if not np.all(colour == colour[..., :1]):
            raise MaskValueError(
                f"Mask file '{p}' is a colour image whose channels differ; a mask has one channel. {fix}"
            )
        arr = arr[..., 0]
    alpha = _alpha_dropped_by_decoder(data, header, arr, path)
    if alpha is not None and not _is_opaque(alpha):
        raise MaskValueError(f"Mask file '{p}' has transparent pixels in its alpha channel. {fix}")

    top = int(np.iinfo(arr.dtype).max)
    values = np.unique(arr)
    found = set(values.tolist())
    if not (found <= {0, 1} or found <= {0, 255} or found <= {0, top}):
        shown = ", ".join(str(v) for v in values[:8].tolist()) + (", ..." if values.size > 8 else "")
        allowed = "{0, 1} or only {0, 255}" + (f" or only {{0, {top}}}" if top != 255 else "")
        raise MaskValueError(f"Mask file '{p}' must contain only {allowed}; got values {{{shown}}}. {fix}")
    if shape is not None and arr.shape != shape:
        raise MaskShapeError(
            f"Mask file '{p}' has size (H, W) = {arr.shape}, expected {shape}. Check that it belongs to "
            "this image, or resize it with nearest-neighbour interpolation."
        )
    return arr != 0


def image_size(path: PathLike) -> tuple[int, int]:
    """Return the (H, W) of an image file from its header, after EXIF orientation.

    Nothing is decoded and the truncation and size checks of :func:`read_image`
    are not made. Raises the same file errors as :func:`read_image` for empty,
    unknown or damaged headers.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
    >>> write_image(path, np.zeros((20, 30, 3), np.uint8))
    >>> image_size(path)
    (20, 30)
    """
    header = _parse_header(_read_bytes(path), path)
    if header.orientation >= 5:
        return header.width, header.height
    return header.height, header.width


# ----------------------------------------------------------------------------- writers


def _write_atomic(path: PathLike, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to a hidden temp file beside ``path``, fsync, then os.replace it into place."""
    target = Path(_fspath(path))
    if target.is_dir():
        raise IsADirectoryError(f"'{target}' is a directory; pass a file path to write to.")
    if not overwrite and target.exists():
        raise FileExistsError(f"'{target}' already exists. Pass overwrite=True to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, like open()
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _encode(ext: str, arr: np.ndarray, params: list[int], path: PathLike) -> bytes:
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:  # pragma: no cover - OpenCV only fails here on unsupported builds
        raise OSError(f"OpenCV could not encode '{_fspath(path)}' as {ext}.")
    return buf.tobytes()


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
    binary = as_bool_mask(mask)
    p = _fspath(path)
    if Path(p).suffix.lower() != ".png":
        raise ConfigError(f"`path` must end in .png (masks are stored losslessly); got '{p}'. Rename it.")
    data = _encode(".png", np.where(binary, np.uint8(255), np.uint8(0)), [], path)
    _write_atomic(path, data, overwrite=overwrite)


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
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext != ".png" else []
    data = _encode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params, path)
    _write_atomic(path, data, overwrite=overwrite)


# ----------------------------------------------------------------------------- folders


def _check_folder(folder: PathLike, name: str) -> Path:
    d = Path(_fspath(folder, name))
    if not d.exists():
        err: OSError = FileNotFoundError(f"`{name}` folder '{d}' does not exist. Check the path.")
    elif not d.is_dir():
        err = NotADirectoryError(f"`{name}` '{d}' is a file, not a folder. Pass the folder that holds it.")
    else:
        return d
    raise err


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
        one of ``skinseg._types.IMAGE_EXTENSIONS`` (any case), sorted.

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
    root = _check_folder(folder, "folder")
    if exclude_suffix == "":
        raise ConfigError(
            "`exclude_suffix` must be a non-empty string or None; got ''. Pass None to keep all files."
        )
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        for name in filenames:
            path = Path(dirpath) / name
            if (
                not name.startswith(".")
                and path.suffix.lower() in IMAGE_EXTENSIONS
                and not (exclude_suffix and path.stem.endswith(exclude_suffix))
                and path.is_file()
            ):
                found.append(path)
    return sorted(found)


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
        raise TypeError(f"`mask_suffix` must be a str; got an object of type {type(mask_suffix).__name__}.")
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
