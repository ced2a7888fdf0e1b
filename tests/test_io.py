"""Tests for skinseg.io: every bad file raises its exact error class and names the file."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

import skinseg.io as sio
from skinseg.errors import (
    AlphaChannelError,
    BitDepthError,
    ConfigError,
    CorruptImageError,
    EmptyFileError,
    GrayscaleImageError,
    ImageFileError,
    ImageTooLargeError,
    MaskShapeError,
    MaskValueError,
    NotAnImageError,
    PathNotFoundError,
    TruncatedImageError,
)
from skinseg.io import (
    image_size,
    list_images,
    pair_images_and_masks,
    read_image,
    read_mask,
    write_image,
    write_mask,
)

# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def rgb(rng: np.random.Generator) -> np.ndarray:
    """A small non-square RGB image (non-square so transposes are caught)."""
    return rng.integers(0, 256, size=(24, 36, 3), dtype=np.uint8)


@pytest.fixture
def smooth_rgb() -> np.ndarray:
    """A smooth image that survives JPEG compression almost unchanged."""
    y, x = np.mgrid[0:48, 0:64]
    return np.dstack([x * 4, y * 5, (x + y) * 2]).astype(np.uint8)


def pil_bytes(arr: np.ndarray, fmt: str, mode: str | None = None, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, fmt, **kw) if mode else Image.fromarray(arr).save(
        buf, fmt, **kw
    )
    return buf.getvalue()


def pil(path: Path) -> Image.Image:
    """Open with Pillow from memory (no file handle left open)."""
    return Image.open(io.BytesIO(path.read_bytes()))


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_header(width: int, height: int, idat: bytes) -> bytes:
    """An RGB 8-bit PNG declaring (width, height), with the given IDAT payload and IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def raises_file_error(cls: type[Exception], path: Path, func=read_image, match: str | None = None, **kw):
    """Assert ``func(path)`` raises exactly ``cls``, naming the file (and setting ``err.path``)."""
    with pytest.raises(cls, match=match) as info:
        func(path, **kw)
    assert type(info.value) is cls
    assert str(path) in str(info.value)
    if isinstance(info.value, ImageFileError):
        assert info.value.path == path
    return info.value


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "fmt, name", [("PNG", "a.png"), ("BMP", "a.bmp"), ("TIFF", "a.tif"), ("TIFF", "a.tiff")]
)
def test_lossless_formats_round_trip(tmp_path: Path, rgb: np.ndarray, fmt: str, name: str) -> None:
    out = read_image(put(tmp_path / name, pil_bytes(rgb, fmt)))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("name", ["a.jpg", "a.jpeg", "a.JPG", "a.JPEG"])
def test_jpeg_round_trip_and_extension_case(tmp_path: Path, smooth_rgb: np.ndarray, name: str) -> None:
    path = put(tmp_path / name, pil_bytes(smooth_rgb, "JPEG", quality=95))
    out = read_image(path)
    np.testing.assert_array_equal(out, np.asarray(pil(path).convert("RGB")))  # RGB, not BGR
    assert np.abs(out.astype(int) - smooth_rgb).mean() < 2


def test_format_is_identified_by_content_not_name(tmp_path: Path, rgb: np.ndarray) -> None:
    np.testing.assert_array_equal(read_image(put(tmp_path / "really_a_png.jpg", pil_bytes(rgb, "PNG"))), rgb)


@pytest.mark.parametrize("ext", [".png", ".PNG", ".jpg", ".JPEG"])
def test_write_image_round_trip(tmp_path: Path, smooth_rgb: np.ndarray, ext: str) -> None:
    path = tmp_path / f"out{ext}"
    write_image(path, smooth_rgb)
    out = read_image(path)
    assert out.shape == smooth_rgb.shape
    if ext.lower() == ".png":
        np.testing.assert_array_equal(out, smooth_rgb)
    else:
        assert pil(path).format == "JPEG"
        assert np.abs(out.astype(int) - smooth_rgb).mean() < 2


def test_write_image_rejects_unknown_extension(tmp_path: Path, rgb: np.ndarray) -> None:
    with pytest.raises(ConfigError, match=r"\.png, \.jpg or \.jpeg"):
        write_image(tmp_path / "a.gif", rgb)
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        read_image(path)
    # a SkinsegError that is still a FileNotFoundError, and not taken for a broken image file
    assert type(info.value) is PathNotFoundError and str(path) in str(info.value)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="directory") as info:
        read_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_path_type_checked() -> None:
    with pytest.raises(TypeError, match="str or os.PathLike"):
        read_image(42)  # type: ignore[arg-type]


def test_empty_file(tmp_path: Path) -> None:
    raises_file_error(EmptyFileError, put(tmp_path / "empty.jpg", b""), match="empty")


@pytest.mark.parametrize(
    "name, data",
    [
        ("notes.jpg", b"this is a text file, not a picture\n"),
        ("table.csv", b"id,label\nISIC_0000000,nevus\n"),
        ("noise.png", bytes(range(256)) * 4),
        ("page.jpg", b"<!DOCTYPE html><html><body>404 Not Found</body></html>"),
    ],
    ids=["text-as-jpg", "csv", "random-bytes", "html-error-page"],
)
def test_not_an_image(tmp_path: Path, name: str, data: bytes) -> None:
    raises_file_error(NotAnImageError, put(tmp_path / name, data), match="JPEG, PNG, BMP and TIFF")


def test_unsupported_image_format_is_named(tmp_path: Path, rgb: np.ndarray) -> None:
    raises_file_error(NotAnImageError, put(tmp_path / "anim.gif", pil_bytes(rgb, "GIF")), match="GIF")


def test_truncated_jpeg(tmp_path: Path, smooth_rgb: np.ndarray) -> None:
    data = pil_bytes(smooth_rgb, "JPEG")
    raises_file_error(
        TruncatedImageError, put(tmp_path / "half.jpg", data[: len(data) // 2]), match="truncated"
    )
    raises_file_error(TruncatedImageError, put(tmp_path / "head.jpg", data[:20]), match="truncated")


def test_truncated_jpeg_with_complete_thumbnail_inside(tmp_path: Path, smooth_rgb: np.ndarray) -> None:
    # A complete JPEG inside APP1 (like an EXIF thumbnail) must not make a cut main image look complete.
    thumb = pil_bytes(smooth_rgb[:8, :8], "JPEG")
    main = pil_bytes(smooth_rgb, "JPEG")
    payload = b"Exif\x00\x00" + thumb
    data = main[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + main[2:]
    np.testing.assert_array_equal(
        read_image(put(tmp_path / "ok.jpg", data)), read_image(put(tmp_path / "m.jpg", main))
    )
    cut = data[: data.rfind(b"\xff\xda")]  # cut just before the main image's scan
    raises_file_error(TruncatedImageError, put(tmp_path / "cut.jpg", cut))


def test_truncated_png(tmp_path: Path, rgb: np.ndarray) -> None:
    data = pil_bytes(rgb, "PNG")
    raises_file_error(TruncatedImageError, put(tmp_path / "half.png", data[: len(data) // 2]), match="IEND")
    raises_file_error(TruncatedImageError, put(tmp_path / "nearly.png", data[:-1]))


def test_corrupt_png(tmp_path: Path) -> None:
    data = png_with_header(16, 8, b"this is not zlib data at all" * 4)
    raises_file_error(CorruptImageError, put(tmp_path / "bad.png", data), match="damaged")


def test_corrupt_jpeg_header(tmp_path: Path, smooth_rgb: np.ndarray) -> None:
    data = bytearray(pil_bytes(smooth_rgb, "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"  # zero width and height
    raises_file_error(CorruptImageError, put(tmp_path / "bad.jpg", bytes(data)), match="damaged")


def test_read_image_bytes_is_read_image_for_bytes(tmp_path: Path, rgb: np.ndarray, smooth_rgb: np.ndarray) -> None:
    """The same pixels, the same error classes and messages (naming the given name), the same conversions."""
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(smooth_rgb).save(rotated, "JPEG", exif=exif.tobytes())
    good = {"a.png": pil_bytes(rgb, "PNG"), "r.jpg": rotated.getvalue(), "g.png": pil_bytes(rgb[..., 0], "PNG")}
    for name, data in good.items():
        np.testing.assert_array_equal(sio.read_image_bytes(data, name=name, convert=True),
                                      read_image(put(tmp_path / name, data), convert=True))
    jpeg = pil_bytes(smooth_rgb, "JPEG")
    bad = {"empty.jpg": b"", "notes.png": b"not an image", "cut.jpg": jpeg[: len(jpeg) // 2],
           "grey.png": pil_bytes(rgb[:16, :16, 0], "PNG"), "big.png": pil_bytes(rgb, "PNG")}
    for name, data in bad.items():
        path = put(tmp_path / name, data)
        with pytest.raises(ImageFileError) as from_file:
            read_image(path, max_pixels=500)
        uri = f"s3://bucket/in/{name}"
        with pytest.raises(ImageFileError) as from_bytes:
            sio.read_image_bytes(data, name=uri, max_pixels=500)
        assert type(from_bytes.value) is type(from_file.value), name
        assert str(from_bytes.value) == str(from_file.value).replace(str(path), uri), name
        assert from_bytes.value.path == uri
    with pytest.raises(TypeError, match="bytes"):
        sio.read_image_bytes(str(tmp_path / "a.png"))  # type: ignore[arg-type]


def test_grayscale(tmp_path: Path, rgb: np.ndarray) -> None:
    grey = rgb[..., 0]
    for path in (
        put(tmp_path / "g.png", pil_bytes(grey, "PNG")),
        put(tmp_path / "g.tif", pil_bytes(grey, "TIFF")),
    ):
        raises_file_error(GrayscaleImageError, path, match="convert=True")
        np.testing.assert_array_equal(read_image(path, convert=True), np.dstack([grey] * 3))


def test_grayscale_jpeg(tmp_path: Path, smooth_rgb: np.ndarray) -> None:
    path = put(tmp_path / "g.jpg", pil_bytes(smooth_rgb[..., 1], "JPEG"))
    raises_file_error(GrayscaleImageError, path)
    out = read_image(path, convert=True)
    assert out.shape == (*smooth_rgb.shape[:2], 3) and np.all(out == out[..., :1])


def test_grayscale_with_alpha(tmp_path: Path, rgb: np.ndarray) -> None:
    grey = rgb[..., 0]
    opaque = put(tmp_path / "la.png", pil_bytes(np.dstack([grey, np.full_like(grey, 255)]), "PNG", mode="LA"))
    raises_file_error(GrayscaleImageError, opaque)
    np.testing.assert_array_equal(read_image(opaque, convert=True), np.dstack([grey] * 3))
    see_through = put(tmp_path / "la_t.png", pil_bytes(np.dstack([grey, grey]), "PNG", mode="LA"))
    raises_file_error(AlphaChannelError, see_through, convert=True)


def test_rgba_opaque_alpha_is_dropped(tmp_path: Path, rgb: np.ndarray) -> None:
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    for fmt, name in [("PNG", "a.png"), ("TIFF", "a.tif")]:
        np.testing.assert_array_equal(read_image(put(tmp_path / name, pil_bytes(rgba, fmt))), rgb)


@pytest.mark.parametrize("convert", [False, True])
def test_rgba_transparency_is_never_dropped(tmp_path: Path, rgb: np.ndarray, convert: bool) -> None:
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[0, 0, 3] = 0
    for fmt, name in [("PNG", "t.png"), ("TIFF", "t.tif")]:
        raises_file_error(
            AlphaChannelError, put(tmp_path / name, pil_bytes(rgba, fmt)), convert=convert, match="Flatten"
        )


def test_grey_alpha_tiff_transparency_not_lost_by_decoder(tmp_path: Path, rgb: np.ndarray) -> None:
    # OpenCV decodes a grey+alpha TIFF without its alpha channel; skinseg must still notice it.
    grey = rgb[..., 0]
    path = put(tmp_path / "la.tif", pil_bytes(np.dstack([grey, grey]), "TIFF", mode="LA"))
    raises_file_error(AlphaChannelError, path, convert=True)


def test_16bit_png(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb16 = rng.integers(0, 65536, size=(10, 14, 3), dtype=np.uint16)
    ok, buf = cv2.imencode(".png", rgb16[..., ::-1])  # cv2 writes BGR: the file holds rgb16
    path = put(tmp_path / "deep.png", buf.tobytes())
    raises_file_error(BitDepthError, path, match="convert=True")
    expected = np.rint(rgb16 / 257).astype(np.uint8)
    np.testing.assert_array_equal(read_image(path, convert=True), expected)


def test_16bit_grey_png_convert(tmp_path: Path, rng: np.random.Generator) -> None:
    grey16 = rng.integers(0, 65536, size=(10, 14), dtype=np.uint16)
    path = put(tmp_path / "deep_grey.png", pil_bytes(grey16, "PNG"))
    raises_file_error(BitDepthError, path)
    np.testing.assert_array_equal(read_image(path, convert=True), np.dstack([np.rint(grey16 / 257)] * 3))


@pytest.mark.parametrize("convert", [False, True])
def test_float_tiff_always_rejected(tmp_path: Path, convert: bool) -> None:
    path = put(tmp_path / "f.tif", pil_bytes(np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5), "TIFF"))
    raises_file_error(BitDepthError, path, match="float32", convert=convert)


# ----------------------------------------------------------------------------- size guard


@pytest.mark.parametrize(
    "width, height, max_pixels",
    [(8000, 8000, 1_000_000), (10_000, 10_000, 50_000_000), (20_000, 20_000, sio.DEFAULT_MAX_PIXELS)],
    ids=["8000x8000", "above-pillow-warning", "above-pillow-error"],
)
def test_too_large_header_is_refused_before_decoding(
    tmp_path: Path, width: int, height: int, max_pixels: int
) -> None:
    # filterwarnings=error: a leaked DecompressionBombWarning would fail this test.
    path = put(tmp_path / "bomb.png", png_with_header(width, height, zlib.compress(b"\x00" * 64)))
    err = raises_file_error(ImageTooLargeError, path, max_pixels=max_pixels, match="larger max_pixels")
    assert f"{width}x{height}" in str(err)
    assert image_size(path) == (height, width)


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small valid JPEG whose frame header (SOF0) declares ``width`` x ``height``."""
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_no_pillow_bomb_warning_on_a_large_jpeg_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       ) -> None:
    """90 MP is above Pillow's warning limit (89 MP) and below max_pixels: no warning reaches the caller,
    even when the warning filters are not what skinseg set (another thread's catch_warnings may have just
    restored them: catch_warnings is process-wide); above max_pixels skinseg's own error names the file."""
    import threading
    import warnings

    path = put(tmp_path / "large.jpg", jpeg_declaring(10_000, 9_000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setattr(warnings, "simplefilter", lambda *a, **k: None)
        assert image_size(path) == (9_000, 10_000)
        threads = [threading.Thread(target=lambda: [image_size(path) for _ in range(50)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        err = raises_file_error(ImageTooLargeError, path, max_pixels=50_000_000, match="max_pixels")
    assert [str(w.message) for w in caught] == []
    assert "10000x9000" in str(err)


def test_pillow_pixel_limit_does_not_apply(
    tmp_path: Path, rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put(tmp_path / "a.png", pil_bytes(rgb, "PNG"))
    for limit in (rgb.shape[0] * rgb.shape[1] - 1, 10):  # Pillow would warn, then raise
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        np.testing.assert_array_equal(read_image(path), rgb)
    raises_file_error(ImageTooLargeError, path, max_pixels=100)


def test_max_pixels_is_validated(tmp_path: Path, rgb: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="max_pixels"):
        read_image(put(tmp_path / "a.png", pil_bytes(rgb, "PNG")), max_pixels=0)


# ----------------------------------------------------------------------------- EXIF orientation


def _with_orientation(arr: np.ndarray, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return pil_bytes(arr, fmt, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_matches_pillow(
    tmp_path: Path, smooth_rgb: np.ndarray, fmt: str, orientation: int
) -> None:
    path = put(tmp_path / f"o{orientation}.{fmt.lower()}", _with_orientation(smooth_rgb, fmt, orientation))
    expected = np.asarray(ImageOps.exif_transpose(pil(path)).convert("RGB"))
    out = read_image(path)
    assert out.flags.c_contiguous
    if fmt == "PNG":
        np.testing.assert_array_equal(out, expected)
    else:  # two JPEG decoders: allow rounding differences
        assert out.shape == expected.shape and np.abs(out.astype(int) - expected).max() <= 2
    assert image_size(path) == expected.shape[:2]


def test_mask_follows_exif_orientation(tmp_path: Path) -> None:
    mask = np.zeros((6, 10), np.uint8)
    mask[0, :3] = 255
    path = put(tmp_path / "m.png", _with_orientation(mask, "PNG", 6))
    expected = np.asarray(ImageOps.exif_transpose(pil(path))) == 255
    np.testing.assert_array_equal(read_mask(path), expected)


# ----------------------------------------------------------------------------- masks


@pytest.mark.parametrize(
    "arr",
    [
        np.array([[0, 255], [255, 0]], np.uint8),
        np.array([[0, 1], [1, 0]], np.uint8),
        np.array([[0, 65535], [65535, 0]], np.uint16),
        np.array([[0, 1], [1, 0]], np.uint16),
        np.array([[0, 255], [255, 0]], np.uint16),
    ],
    ids=["u8-255", "u8-1", "u16-65535", "u16-1", "u16-255"],
)
def test_read_mask_accepted_values(tmp_path: Path, arr: np.ndarray) -> None:
    out = read_mask(put(tmp_path / "m.png", pil_bytes(arr, "PNG")))
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, np.array([[False, True], [True, False]]))


def test_read_mask_all_zero_and_one_bit(tmp_path: Path) -> None:
    assert not read_mask(put(tmp_path / "z.png", pil_bytes(np.zeros((3, 4), np.uint8), "PNG"))).any()
    bits = np.eye(4, dtype=bool)
    np.testing.assert_array_equal(read_mask(put(tmp_path / "b.png", pil_bytes(bits, "PNG"))), bits)


def test_read_mask_identical_colour_channels(tmp_path: Path) -> None:
    m = np.eye(5, dtype=np.uint8) * 255
    np.testing.assert_array_equal(
        read_mask(put(tmp_path / "rgb.png", pil_bytes(np.dstack([m] * 3), "PNG"))), m > 0
    )
    rgba = np.dstack([m, m, m, np.full_like(m, 255)])
    np.testing.assert_array_equal(read_mask(put(tmp_path / "rgba.png", pil_bytes(rgba, "PNG"))), m > 0)


def test_read_mask_rejects_grey_levels(tmp_path: Path) -> None:
    arr = np.array([[0, 128], [255, 0]], np.uint8)
    err = raises_file_error(MaskValueError, put(tmp_path / "m.png", pil_bytes(arr, "PNG")), func=read_mask)
    assert "0, 128, 255" in str(err) and "Binarise" in str(err)


def test_read_mask_rejects_float_and_jpeg_artefacts(tmp_path: Path) -> None:
    raises_file_error(
        MaskValueError,
        put(tmp_path / "f.tif", pil_bytes(np.eye(4, dtype=np.float32), "TIFF")),
        func=read_mask,
        match="float32",
    )
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 5:20] = 255
    raises_file_error(
        MaskValueError, put(tmp_path / "lossy.jpg", pil_bytes(m, "JPEG", quality=50)), func=read_mask
    )


def test_read_mask_rejects_colour_and_transparency(tmp_path: Path, rgb: np.ndarray) -> None:
    raises_file_error(
        MaskValueError, put(tmp_path / "c.png", pil_bytes(rgb, "PNG")), func=read_mask, match="colour"
    )
    m = np.eye(4, dtype=np.uint8) * 255
    rgba = np.dstack([m, m, m, m])
    raises_file_error(
        MaskValueError, put(tmp_path / "t.png", pil_bytes(rgba, "PNG")), func=read_mask, match="transparent"
    )


def test_read_mask_shape(tmp_path: Path) -> None:
    path = put(tmp_path / "m.png", pil_bytes(np.zeros((6, 9), np.uint8), "PNG"))
    assert read_mask(path, shape=(6, 9)).shape == (6, 9)
    err = raises_file_error(MaskShapeError, path, func=read_mask, shape=(9, 6))
    assert "(6, 9)" in str(err) and "(9, 6)" in str(err)
    with pytest.raises(ConfigError, match="shape"):
        read_mask(path, shape=(6, 9, 3))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cls, data",
    [(EmptyFileError, b""), (NotAnImageError, b"a,b\n1,2\n"), (TruncatedImageError, None)],
    ids=["empty", "csv", "truncated"],
)
def test_read_mask_file_errors(tmp_path: Path, cls: type[Exception], data: bytes | None) -> None:
    if data is None:
        full = pil_bytes(np.zeros((20, 20), np.uint8), "PNG")
        data = full[: len(full) // 2]
    raises_file_error(cls, put(tmp_path / "m.png", data), func=read_mask)


@pytest.mark.parametrize(
    "values, levels",
    [((0,), "empty"), ((0, 1), "0/1"), ((1,), "0/1"), ((0, 255), "0/255"), ((255,), "0/255")],
    ids=["empty", "0-1", "all-1", "0-255", "all-255"],
)
@pytest.mark.parametrize("binarise", ["exact", "isic"])
def test_read_mask_file_levels(tmp_path: Path, values: tuple[int, ...], levels: str, binarise: str) -> None:
    """One rule for both modes: {0, 1} is 1 = lesion, {0, 255} is 255 = lesion, all-zero is empty."""
    arr = np.full((4, 6), values[-1], np.uint8)
    arr[:, :3] = values[0]
    path = put(tmp_path / "m.png", pil_bytes(arr, "PNG"))
    got = sio.read_mask_file(path, binarise=binarise)
    assert got.levels == levels and got.path == path and got.mask.dtype == np.bool_
    np.testing.assert_array_equal(got.mask, arr != 0)
    np.testing.assert_array_equal(read_mask(path), got.mask)


def test_read_mask_file_isic_binarises_grey_levels_above_128(tmp_path: Path) -> None:
    arr = np.array([[0, 1, 128, 129, 200, 255]], np.uint8)  # e.g. an anti-aliased or JPEG truth
    path = put(tmp_path / "grey.png", pil_bytes(arr, "PNG"))
    got = sio.read_mask_file(path, binarise="isic")
    assert got.levels == "grey>128"
    np.testing.assert_array_equal(got.mask, arr > 128)
    raises_file_error(MaskValueError, path, func=read_mask)  # read_mask never thresholds


@pytest.mark.parametrize("values", [(0, 100), (0, 1, 2), (0, 128)], ids=["0-100", "0-1-2", "0-128"])
def test_read_mask_file_isic_refuses_ambiguous_low_values(tmp_path: Path, values: tuple[int, ...]) -> None:
    arr = np.array([values], np.uint8)
    path = put(tmp_path / "low.png", pil_bytes(arr, "PNG"))
    err = raises_file_error(MaskValueError, path, func=sio.read_mask_file, binarise="isic")
    assert "none above 128" in str(err) and "{0, 255}" in str(err)


def test_read_mask_file_isic_needs_8_bit_single_channel(tmp_path: Path) -> None:
    m = np.eye(4, dtype=np.uint8) * 255
    rgb = put(tmp_path / "rgb.png", pil_bytes(np.dstack([m] * 3), "PNG"))
    raises_file_error(MaskValueError, rgb, func=sio.read_mask_file, binarise="isic", match="single-channel")
    deep = put(tmp_path / "deep.png", pil_bytes(m.astype(np.uint16) * 257, "PNG"))
    raises_file_error(MaskValueError, deep, func=sio.read_mask_file, binarise="isic", match="8-bit")
    with pytest.raises(ConfigError, match="binarise"):
        sio.read_mask_file(rgb, binarise="otsu")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- writing masks, atomicity


@pytest.mark.parametrize("dtype, scale", [(bool, 1), (np.uint8, 1), (np.uint8, 255), (np.int64, 1)])
def test_write_mask_round_trip(tmp_path: Path, dtype: type, scale: int) -> None:
    truth = np.zeros((7, 11), bool)
    truth[2:5, 3:9] = True
    mask = truth.astype(dtype) * scale if dtype is not bool else truth
    path = tmp_path / "sub" / "dir" / "m.png"  # parents are created
    write_mask(path, mask)
    on_disk = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert on_disk.dtype == np.uint8 and on_disk.shape == (7, 11)
    assert set(np.unique(on_disk).tolist()) == {0, 255}
    np.testing.assert_array_equal(read_mask(path), truth)
    assert os.listdir(path.parent) == ["m.png"]  # no temp file left


def test_write_mask_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(MaskValueError, match="128"):
        write_mask(tmp_path / "m.png", np.array([[0, 128]], np.uint8))
    with pytest.raises(ConfigError, match=r"\.png"):
        write_mask(tmp_path / "m.jpg", np.zeros((2, 2), bool))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("writer", ["mask", "image"])
def test_existing_file_needs_overwrite(tmp_path: Path, rgb: np.ndarray, writer: str) -> None:
    path = put(tmp_path / "out.png", b"original")
    write = (
        (lambda **kw: write_mask(path, rgb[..., 0] > 127, **kw))
        if writer == "mask"
        else (lambda **kw: write_image(path, rgb, **kw))
    )
    with pytest.raises(FileExistsError, match="overwrite=True") as info:
        write()
    assert str(path) in str(info.value)
    assert path.read_bytes() == b"original"
    write(overwrite=True)
    assert pil(path).format == "PNG"
    assert os.listdir(tmp_path) == ["out.png"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_failed_write_keeps_original_and_leaves_no_temp(
    tmp_path: Path, rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = put(tmp_path / "out.png", b"original")
    seen: list[str] = []

    def boom(*args: object) -> None:
        seen.extend(os.listdir(tmp_path))
        raise OSError("disk full")

    monkeypatch.setattr(os, failing, boom)  # the module every writer uses (skinseg._files)
    with pytest.raises(OSError, match="disk full"):
        write_image(path, rgb, overwrite=True)
    assert any(n.startswith(".out.png.") and n.endswith(".tmp") for n in seen)  # temp file was used
    assert path.read_bytes() == b"original"
    assert os.listdir(tmp_path) == ["out.png"]


def test_writers_never_modify_their_input(tmp_path: Path, rgb: np.ndarray) -> None:
    image, mask = rgb.copy(), np.eye(24, 36, dtype=np.uint8) * 255
    image.flags.writeable = False
    mask.flags.writeable = False
    write_image(tmp_path / "a.jpg", image)
    write_image(tmp_path / "a.png", image)
    write_mask(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(image, rgb)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), mask > 0)
    assert not np.shares_memory(read_image(tmp_path / "a.png"), image)


# ----------------------------------------------------------------------------- folders and pairing


def touch(*paths: Path) -> None:
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def test_list_images(tmp_path: Path) -> None:
    touch(
        tmp_path / "b.PNG",
        tmp_path / "a.jpg",
        tmp_path / "c.Tiff",
        tmp_path / ".hidden.jpg",
        tmp_path / "notes.txt",
        tmp_path / "a_segmentation.png",
        tmp_path / "sub" / "d.bmp",
        tmp_path / ".cache" / "e.png",
    )
    (tmp_path / "folder.png").mkdir()
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.jpg", "a_segmentation.png", "b.PNG", "c.Tiff"]
    assert [p.name for p in list_images(tmp_path, exclude_suffix="_segmentation")] == [
        "a.jpg",
        "b.PNG",
        "c.Tiff",
    ]
    deep = list_images(tmp_path, recursive=True)
    assert deep == sorted(deep) and tmp_path / "sub" / "d.bmp" in deep
    assert not any(".cache" in p.parts for p in deep)


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "missing")
    touch(tmp_path / "a.png")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        list_images(tmp_path / "a.png")
    with pytest.raises(ConfigError, match="exclude_suffix"):
        list_images(tmp_path, exclude_suffix="")


def test_pair_isic_style_same_folder(tmp_path: Path) -> None:
    touch(
        tmp_path / "ISIC_0000001.jpg",
        tmp_path / "ISIC_0000001_segmentation.png",
        tmp_path / "ISIC_0000000.jpg",
        tmp_path / "ISIC_0000000_segmentation.png",
        tmp_path / "ISIC_0000002.jpg",
        tmp_path / "ISIC_0000009_segmentation.png",
    )
    pairs, lonely_images, lonely_masks = pair_images_and_masks(tmp_path)
    assert [(i.name, m.name) for i, m in pairs] == [
        ("ISIC_0000000.jpg", "ISIC_0000000_segmentation.png"),
        ("ISIC_0000001.jpg", "ISIC_0000001_segmentation.png"),
    ]
    assert lonely_images == [tmp_path / "ISIC_0000002.jpg"]
    assert lonely_masks == [tmp_path / "ISIC_0000009_segmentation.png"]


def test_pair_dev_set_style_separate_folders(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    touch(images / "ISIC_1.jpg", images / "ISIC_2.jpg", masks / "ISIC_1.png", masks / "ISIC_3.png")
    pairs, lonely_images, lonely_masks = pair_images_and_masks(images, masks, mask_suffix="")
    assert pairs == [(images / "ISIC_1.jpg", masks / "ISIC_1.png")]
    assert lonely_images == [images / "ISIC_2.jpg"] and lonely_masks == [masks / "ISIC_3.png"]
    # a separate folder with a suffix: files lacking it are reported, not paired
    pairs, _, lonely_masks = pair_images_and_masks(images, masks, mask_suffix="_segmentation")
    assert pairs == [] and lonely_masks == [masks / "ISIC_1.png", masks / "ISIC_3.png"]


def test_pair_ph2_nested(tmp_path: Path) -> None:
    for case in ("IMD002", "IMD003"):
        touch(tmp_path / case / f"{case}_Dermoscopic_Image" / f"{case}.bmp")
    touch(tmp_path / "IMD002" / "IMD002_lesion" / "IMD002_lesion.bmp")
    pairs, lonely_images, lonely_masks = pair_images_and_masks(
        tmp_path, mask_suffix="_lesion", recursive=True
    )
    assert pairs == [
        (
            tmp_path / "IMD002" / "IMD002_Dermoscopic_Image" / "IMD002.bmp",
            tmp_path / "IMD002" / "IMD002_lesion" / "IMD002_lesion.bmp",
        )
    ]
    assert lonely_images == [tmp_path / "IMD003" / "IMD003_Dermoscopic_Image" / "IMD003.bmp"]
    assert lonely_masks == []
    assert pair_images_and_masks(tmp_path, mask_suffix="_lesion")[0] == []  # not recursive: nothing


def test_pair_errors(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "ISIC_1.jpg", tmp_path / "a" / "ISIC_1.png")
    with pytest.raises(ConfigError, match="duplicate") as info:
        pair_images_and_masks(tmp_path / "a")
    assert "ISIC_1.jpg" in str(info.value) and "ISIC_1.png" in str(info.value)
    with pytest.raises(ConfigError, match="mask_suffix"):
        pair_images_and_masks(tmp_path / "a", tmp_path / "a", mask_suffix="")
    with pytest.raises(FileNotFoundError, match="mask_dir"):
        pair_images_and_masks(tmp_path / "a", tmp_path / "missing")


# ----------------------------------------------------------------------------- hygiene and real data


def test_io_does_not_import_torch() -> None:
    code = "import skinseg.io, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


@pytest.mark.realdata
def test_real_dev_set(lesions_dir: Path) -> None:
    pairs, lonely_images, lonely_masks = pair_images_and_masks(
        lesions_dir / "images", lesions_dir / "masks", mask_suffix=""
    )
    assert len(pairs) >= 5 and not lonely_images and not lonely_masks
    for image_path, mask_path in pairs[:5]:
        image = read_image(image_path)
        mask = read_mask(mask_path, shape=image.shape[:2])
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert image_size(image_path) == image.shape[:2]
        assert 0 < mask.mean() < 1


def test_a_multi_page_tiff_is_refused_not_read_as_page_one(tmp_path: Path, rgb: np.ndarray) -> None:
    """Issue 16 (11): a multi-page TIFF silently read page 1."""
    from PIL import Image

    from skinseg.errors import UnsupportedImageError

    path = tmp_path / "stack.tif"
    pages = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    with pytest.raises(UnsupportedImageError, match="2 pages"):
        sio.read_image(path)
    one = tmp_path / "one.tif"
    Image.fromarray(rgb).save(one)
    np.testing.assert_array_equal(sio.read_image(one), rgb)


def test_a_damaged_png_is_reported_without_libpng_noise(tmp_path: Path, rgb: np.ndarray, capfd) -> None:
    """Issue 16 (12): OpenCV's own 'libpng error' lines leaked to stderr."""
    from skinseg.errors import CorruptImageError

    data = bytearray(cv2.imencode(".png", rgb)[1].tobytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside the image data; IEND stays
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptImageError, match="bad.png.*damaged"):
        sio.read_image(path)
    assert "libpng" not in capfd.readouterr().err


def test_scan_entries_is_the_one_set_of_listing_rules(tmp_path: Path) -> None:
    """Local folders and object-store listings share scan_entries: the same images, the same reasons."""
    entries = [("b.png", "file"), ("a.JPG", "file"), ("a_segmentation.png", "file"), (".hidden.png", "file"),
               ("notes.txt", "file"), ("fifo", "special"), ("gone.png", "dangling"), ("dir.png", "dir"),
               ("sub/c.png", "file"), ("sub/.x/d.png", "file"), (".git/objects/e.png", "file")]
    flat, skipped = sio.scan_entries(entries, exclude_suffix="_segmentation")
    assert flat == ["a.JPG", "b.png"]
    assert skipped == {"dangling_link": ["gone.png"], "directory_named_like_an_image": ["dir.png"],
                       "hidden": [".git", ".hidden.png"], "mask_suffix": ["a_segmentation.png"],
                       "not_an_image_name": ["notes.txt"], "special_file": ["fifo"], "subfolder": ["sub"]}
    deep, skipped = sio.scan_entries(entries, recursive=True, exclude_suffix="_segmentation")
    assert deep == ["a.JPG", "b.png", "sub/c.png"]
    assert skipped["hidden"] == [".git", ".hidden.png", "sub/.x"]  # a folder counted once, listed or not
    for name in ("b.png", "a.JPG", "a_segmentation.png", "sub/c.png", "sub/.x/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        put(tmp_path / name, b"x")
    scan = sio.scan_images(tmp_path, recursive=True, exclude_suffix="_segmentation")
    assert [p.relative_to(tmp_path).as_posix() for p in scan.images] == ["a.JPG", "b.png", "sub/c.png"]
    assert scan.skipped_counts() == {"hidden": 1, "mask_suffix": 1}
