"""Low-level image-file helpers behind :mod:`skinseg.io` (private; no public API here).

Reading bytes, identifying the format from the content, JPEG/PNG truncation checks,
Pillow header parsing, EXIF orientation, OpenCV decoding, alpha checks, the
conversion of decoded pixels to RGB images and binary masks, and atomic writes.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin  # noqa: F401 - registers

from .errors import (
    AlphaChannelError,
    ArgumentTypeError,
    BitDepthError,
    CorruptImageError,
    EmptyFileError,
    GrayscaleImageError,
    ImageTooLargeError,
    MaskShapeError,
    MaskValueError,
    NotAnImageError,
    PathIsFolderError,
    PathNotFoundError,
    TruncatedImageError,
    UnsupportedImageError,
)

PathLike = str | os.PathLike[str]

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
# warnings.catch_warnings changes process-wide state: reader threads take turns, or one thread's exit
# would restore the filters while another is still inside (Pillow's warnings then leak to the terminal)
_PIL_WARNINGS = threading.RLock()
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
        raise ArgumentTypeError(
            f"`{name}` must be a str or os.PathLike; got an object of type {type(path).__name__}."
        )
    return os.fspath(path)  # type: ignore[return-value]


def _read_bytes(path: PathLike) -> bytes:
    p = _fspath(path)
    if os.path.isdir(p):
        err: OSError = PathIsFolderError(f"'{p}' is a directory, not an image file. Pass a file inside it.")
    elif not os.path.exists(p):
        hint = f" (relative to the working directory {os.getcwd()})" if not os.path.isabs(p) else ""
        err = PathNotFoundError(f"Image file '{p}' does not exist{hint}. Check the path.")
    else:
        with open(p, "rb") as f:
            return _check_not_empty(f.read(), path)
    raise err


def _check_not_empty(data: bytes, path: PathLike) -> bytes:
    """``data``, or :class:`EmptyFileError` naming ``path`` when there are no bytes."""
    if not data:
        raise EmptyFileError(
            f"Image file '{_fspath(path)}' is empty (0 bytes). The copy or download failed; fetch the file again.",
            path=path,
        )
    return data


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


def _png_bad_chunk(data: bytes) -> str | None:
    """The type of the first PNG chunk whose CRC does not match its data, else None.

    Checked before decoding, so a damaged PNG gets a clear error instead of libpng
    printing "libpng error: ... CRC error" to the terminal (OpenCV's decoder does).
    """
    import zlib

    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            return None  # a truncation: _check_complete reports those
        kind = data[pos + 4 : pos + 8]
        if zlib.crc32(data[pos + 4 : pos + 8 + length]) != int.from_bytes(data[end - 4 : end], "big"):
            return kind.decode("latin-1")
        if kind == b"IEND":
            return None
        pos = end
    return None


def _png_chunk(data: bytes, chunk_type: bytes) -> bytes | None:
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == chunk_type:
            return data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return None


def _open_pillow(data: bytes, fmt_hint: str | None) -> Image.Image:
    """Pillow's lazy open (header only), independent of ``Image.MAX_IMAGE_PIXELS``.

    A file whose signature is known is opened by its plugin directly, without Pillow's
    decompression-bomb check (which warns from 89 megapixels): skinseg's own limit,
    ``max_pixels``, is checked from the header (:func:`_check_size`, ImageTooLargeError).
    Pillow's metadata warnings are silenced, under a lock (see ``_PIL_WARNINGS``).
    """
    with _PIL_WARNINGS, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt_hint is not None:
            try:
                return Image.OPEN[fmt_hint][0](io.BytesIO(data), "")
            except Exception:  # a damaged header: Image.open tries every format, then raises
                pass
        return Image.open(io.BytesIO(data))


def _orientation(im: Image.Image, data: bytes, fmt: str) -> int:
    if fmt == "PNG" and "exif" not in im.info:
        # Pillow's PNG getexif() decodes the pixels to find an eXIf chunk after IDAT; do it by hand.
        im.info["exif"] = _png_chunk(data, b"eXIf") or b""
    try:
        with _PIL_WARNINGS, warnings.catch_warnings():
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
    if fmt == "TIFF" and _frames(im) > 1:
        raise UnsupportedImageError(
            f"'{p}' is a TIFF with {_frames(im)} pages; skinseg reads one image per file and will not pick a "
            "page for you. Split it into one file per page (e.g. `tiffsplit`, or Pillow's ImageSequence).",
            path=path,
        )
    return _Header(fmt, im.width, im.height, im.mode, _orientation(im, data, fmt))


def _frames(im: Image.Image) -> int:
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception:  # a damaged page table: decoding the first page will tell
        return 1


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
    bad = _png_bad_chunk(data) if header.format == "PNG" else None
    if bad is not None:
        raise CorruptImageError(
            f"Cannot decode '{_fspath(path)}': its PNG {bad} chunk is damaged (checksum mismatch). "
            "Replace it with a good copy.",
            path=path,
        )
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
        with _PIL_WARNINGS, warnings.catch_warnings():
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


# ----------------------------------------------------------------------------- decoded pixels


def _to_rgb(data: bytes, arr: np.ndarray, header: _Header, path: PathLike, *, convert: bool) -> np.ndarray:
    """Decoded BGR[A] or grey pixels -> C-contiguous (H, W, 3) uint8 RGB (see skinseg.io.read_image)."""
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


ISIC_BINARY_LEVEL = 128
"""The ISIC scorer reads a mask file as ``pixel > 128`` (``isic_challenge_scoring/segmentation.py``)."""


def _mask_levels(arr: np.ndarray, p: str, binarise: str, fix: str) -> tuple[np.ndarray, str]:
    """The one rule that turns the values of a 2-D integer mask into a bool mask.

    Returns the mask and how the file stored it: ``"empty"`` (all zero), ``"0/1"`` (only
    {0, 1}: 1 is lesion), ``"0/255"``, ``"0/max"`` (only {0, dtype max}, ``binarise="exact"``
    only) or ``"grey>128"`` (other values with at least one above 128, binarised as
    ``pixel > 128`` like the ISIC scorer, ``binarise="isic"`` only). Anything else raises.
    """
    if arr.dtype == np.uint8:
        counts = np.bincount(arr.ravel(), minlength=256)
        values = np.flatnonzero(counts)
    else:
        values = np.unique(arr)
    found = set(values.tolist())
    if found <= {0}:
        return np.zeros(arr.shape, bool), "empty"
    if found <= {0, 1}:
        return arr != 0, "0/1"
    if found <= {0, 255}:
        return arr != 0, "0/255"
    shown = ", ".join(str(v) for v in values[:8].tolist()) + (", ..." if values.size > 8 else "")
    if binarise == "isic":
        if int(values[-1]) > ISIC_BINARY_LEVEL:
            return arr > ISIC_BINARY_LEVEL, "grey>128"
        raise MaskValueError(
            f"Mask file '{p}' is ambiguous: it has non-zero values {{{shown}}} but none above "
            f"{ISIC_BINARY_LEVEL}, and it is not a {{0, 1}} mask. The ISIC scorer (pixel > "
            f"{ISIC_BINARY_LEVEL}) would read it as empty. Save it with values {{0, 255}} "
            "(e.g. skinseg.write_mask(path, arr > 0) if every non-zero pixel is lesion)."
        )
    top = int(np.iinfo(arr.dtype).max)
    if found <= {0, top}:
        return arr != 0, "0/max"
    allowed = "{0, 1} or only {0, 255}" + (f" or only {{0, {top}}}" if top != 255 else "")
    raise MaskValueError(f"Mask file '{p}' must contain only {allowed}; got values {{{shown}}}. {fix}")


def _to_mask(
    data: bytes,
    arr: np.ndarray,
    header: _Header,
    path: PathLike,
    shape: tuple[int, int] | None,
    binarise: str = "exact",
) -> tuple[np.ndarray, str]:
    """Decoded pixels -> ((H, W) bool mask, levels) (see skinseg.io.read_mask_file).

    ``binarise="exact"`` never thresholds; ``"isic"`` also reads 8-bit single-channel grey
    levels as ``pixel > 128``, as the ISIC scorer, which accepts only such files.
    """
    p = _fspath(path)
    fix = "Binarise it explicitly (e.g. arr > 127 if that is right) and save it with skinseg.write_mask."

    if not np.issubdtype(arr.dtype, np.integer):
        raise MaskValueError(
            f"Mask file '{p}' must hold integer values {{0, 1}} or {{0, 255}}; got dtype {arr.dtype}. {fix}"
        )
    if binarise == "isic":
        if arr.ndim != 2 or header.mode in _ALPHA_MODES:
            channels = arr.shape[2] if arr.ndim == 3 else 2
            raise MaskValueError(
                f"Mask file '{p}' must be single-channel (greyscale), as the ISIC scorer requires; got "
                f"{channels} channels. Save it as an 8-bit greyscale PNG with values {{0, 255}}."
            )
        if arr.dtype != np.uint8:
            raise MaskValueError(
                f"Mask file '{p}' must be 8-bit, as the ISIC scorer requires; got {arr.dtype}. "
                "Save it as an 8-bit greyscale PNG with values {0, 255}."
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

    mask, levels = _mask_levels(arr, p, binarise, fix)
    if shape is not None and mask.shape != shape:
        raise MaskShapeError(
            f"Mask file '{p}' has size (H, W) = {mask.shape}, expected {shape}. Check that it belongs to "
            "this image, or resize it with nearest-neighbour interpolation."
        )
    return mask, levels


# ----------------------------------------------------------------------------- writing helpers


def _encode(ext: str, arr: np.ndarray, params: list[int], path: PathLike) -> bytes:
    ok, buf = cv2.imencode(ext, arr, params)
    if not ok:  # pragma: no cover - OpenCV only fails here on unsupported builds
        raise OSError(f"OpenCV could not encode '{_fspath(path)}' as {ext}.")
    return buf.tobytes()
