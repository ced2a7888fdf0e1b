"""Tests of skinseg.runs.segment_folder: streamed folder segmentation, bad files, resume, byte-identical
restarts, the run journal and the output-folder rules."""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from skinseg.errors import ConfigError
from skinseg.io import read_image, read_mask, write_image
from skinseg.models import model_fingerprint
from skinseg.runs import (
    RESULT_COLUMNS,
    check_output_dir,
    draw_contour_overlay,
    result_columns,
    segment_folder,
)
from skinseg.testing import synthetic_lesion

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model():
    from skinseg.models import create_segmenter

    torch.manual_seed(0)
    model = create_segmenter(
        "unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), input_size=64
    )
    with torch.no_grad():  # spread the logits so masks are not all near the threshold
        model.network.segmentation_head[0].weight.mul_(20.0)
    return model.eval()


def _good_images(folder: Path, n: int = 5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image, _ = synthetic_lesion((40 + 7 * i, 64 - 3 * i), rng=i)
        path = folder / f"img{i}.{'png' if i % 2 else 'jpg'}"
        write_image(path, image)
        paths.append(path)
    return paths


def _png_16bit(h: int, w: int) -> bytes:
    raw = b"".join(b"\x00" + struct.pack(f">{w * 3}H", *([40000] * w * 3)) for _ in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _bad_images(folder: Path) -> dict[str, str]:
    """Write one file of every bad kind; return {file name: expected error class}."""
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = synthetic_lesion((48, 64), rng=7)
    (folder / "empty.jpg").write_bytes(b"")
    good_png = cv2.imencode(".png", image)[1].tobytes()
    (folder / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    good_jpg = cv2.imencode(".jpg", image)[1].tobytes()
    (folder / "cut.jpg").write_bytes(good_jpg[: len(good_jpg) - 200])
    (folder / "notes.png").write_bytes(b"lesion notes, not an image\n")
    cv2.imwrite(str(folder / "grey.png"), image[..., 0])
    rgba = np.dstack([image, np.full(image.shape[:2], 128, np.uint8)])
    cv2.imwrite(str(folder / "transparent.png"), rgba)
    (folder / "deep.png").write_bytes(_png_16bit(20, 30))
    cv2.imwrite(str(folder / "big.png"), np.zeros((120, 120, 3), np.uint8))
    return {
        "empty.jpg": "EmptyFileError",
        "truncated.png": "TruncatedImageError",
        "cut.jpg": "TruncatedImageError",
        "notes.png": "NotAnImageError",
        "grey.png": "GrayscaleImageError",
        "transparent.png": "AlphaChannelError",
        "deep.png": "BitDepthError",
        "big.png": "ImageTooLargeError",
    }


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _timings(out: Path) -> list[dict[str, str]]:
    with open(out / "timings.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


_BOOKKEEPING = {"timings.csv", "journal.jsonl", "run.json", ".skinseg.lock"}


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every output file's bytes except the run's bookkeeping (timing log, journal, run.json, lock)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in _BOOKKEEPING
    }


def _journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]


class _CountingModel(torch.nn.Module):
    """Wraps a segmenter and counts the images that go through the network."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.fingerprint = model_fingerprint(inner)  # same model, same run settings
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return self.inner(x)


# --------------------------------------------------------------------------- outputs


def test_outputs_have_right_names_sizes_and_values(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    paths = _good_images(src / "a")
    paths += _good_images(src / "b", n=2)
    (src / "b" / "img0_segmentation.png").write_bytes(
        (src / "b" / "img1.png").read_bytes()
    )  # a mask: skipped
    before = {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    result = segment_folder(tiny_model, src, out, recursive=True, batch_size=3, progress=False)
    assert (result.n_images, result.n_ok, result.n_failed, result.n_skipped) == (7, 7, 0, 0)
    rows = _rows(out)
    assert tuple(rows[0]) == RESULT_COLUMNS
    assert [r["file"] for r in rows] == [p.relative_to(src).as_posix() for p in sorted(paths)]
    for path in paths:
        rel = path.relative_to(src)
        image = read_image(path)
        mask_file = out / rel.parent / f"{rel.stem}_segmentation.png"
        raw = cv2.imread(str(mask_file), cv2.IMREAD_UNCHANGED)
        assert raw.shape == image.shape[:2] and raw.dtype == np.uint8
        assert set(np.unique(raw).tolist()) <= {0, 255}
        overlay = read_image(out / "overlays" / rel.parent / f"{rel.stem}_overlay.png")
        assert overlay.shape == image.shape
        row = next(r for r in rows if r["file"] == rel.as_posix())
        mask = raw > 0
        assert (int(row["height"]), int(row["width"])) == image.shape[:2]
        assert int(row["lesion_area_px"]) == int(mask.sum())
        assert float(row["lesion_fraction"]) == pytest.approx(mask.mean(), abs=1e-6)
        if mask.any():
            ys, xs = np.nonzero(mask)
            assert [int(row[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]
            assert 0.0 <= float(row["mean_prob"]) <= 1.0
        assert row["status"] == "ok" and row["error"] == ""
    assert before == {p: p.read_bytes() for p in src.rglob("*") if p.is_file()}  # inputs untouched
    assert not (out / "b" / "img0_segmentation_segmentation.png").exists()
    timings = _timings(out)
    assert len(timings) == 7 and all(float(t["seconds"]) >= 0 for t in timings)


def test_bad_files_are_recorded_and_good_files_segmented(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    good = _good_images(src, n=3)
    expected = _bad_images(src)
    write_image(src / "tiny.png", np.full((1, 1, 3), 200, np.uint8))  # 1x1: segments
    out = tmp_path / "out"
    result = segment_folder(tiny_model, src, out, max_pixels=10_000, progress=False)
    rows = {r["file"]: r for r in _rows(out)}
    assert result.n_failed == len(expected) and result.n_ok == len(good) + 1
    for name, error_class in expected.items():
        assert rows[name]["status"] == "error", name
        assert rows[name]["error_type"] == error_class, name
        assert name in rows[name]["error"]  # the message names the file
        assert not (out / f"{Path(name).stem}_segmentation.png").exists()
    for path in good:
        assert rows[path.name]["status"] == "ok"
        assert (out / f"{path.stem}_segmentation.png").is_file()
    assert rows["tiny.png"]["status"] == "ok"
    assert read_mask(out / "tiny_segmentation.png").shape == (1, 1)
    assert {f for f, _, _ in result.failed} == set(expected)


def test_convert_accepts_grey_and_16bit(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _bad_images(src)
    out = tmp_path / "out"
    segment_folder(tiny_model, src, out, convert=True, progress=False)
    rows = {r["file"]: r for r in _rows(out)}
    assert rows["grey.png"]["status"] == "ok" and rows["deep.png"]["status"] == "ok"
    assert rows["transparent.png"]["error_type"] == "AlphaChannelError"  # never dropped silently
    assert read_mask(out / "deep_segmentation.png").shape == (20, 30)


def test_large_images_take_turns_without_deadlock(tiny_model, tmp_path: Path, monkeypatch) -> None:
    import skinseg.inference.stream as stream

    monkeypatch.setattr(stream, "DEFAULT_INFLIGHT_PIXELS", 3000)  # every image is "huge": one at a time
    src = tmp_path / "in"
    _good_images(src, n=6)
    result = segment_folder(tiny_model, src, tmp_path / "out", batch_size=4, workers=3, progress=False)
    assert result.n_ok == 6


# --------------------------------------------------------------------------- resume


def test_rerun_skips_complete_images(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=5)
    (src / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    model = _CountingModel(tiny_model)
    first = segment_folder(model, src, out, progress=False)
    assert model.seen == 5 and first.n_processed == 6
    again = segment_folder(model, src, out, progress=False)
    assert model.seen == 5  # nothing went through the model again
    assert (again.n_skipped, again.n_processed, again.n_failed) == (5, 1, 1)  # error rows are retried
    (out / "img3_segmentation.png").unlink()
    (out / "overlays" / "img1_overlay.png").unlink()
    third = segment_folder(model, src, out, progress=False)
    assert model.seen == 7 and third.n_skipped == 3
    assert (out / "img3_segmentation.png").is_file() and (out / "overlays" / "img1_overlay.png").is_file()


def test_interrupted_run_finishes_identically(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=6)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    reference = tmp_path / "reference"
    segment_folder(tiny_model, src, reference, batch_size=4, progress=False)

    out = tmp_path / "killed"
    segment_folder(tiny_model, src, out, batch_size=4, progress=False)
    # Simulate a kill before the end: the last journal lines never made it (one mid-line), one
    # mask was written but not its overlay, a temporary file was left behind, and results.csv
    # was not written yet.
    lines = (out / "journal.jsonl").read_text().splitlines(keepends=True)
    kept, lost = lines[:-3], lines[-3:]
    (out / "journal.jsonl").write_text("".join(kept) + lost[0][:17])
    lost_files = [json.loads(ln)["file"] for ln in lost]
    for name in lost_files[1:]:
        (out / "overlays" / f"{Path(name).stem}_overlay.png").unlink(missing_ok=True)
    (out / ".img0_segmentation.png.0123456789ab.tmp").write_bytes(b"half a png")
    (out / "results.csv").unlink()
    model = _CountingModel(tiny_model)
    result = segment_folder(model, src, out, batch_size=2, progress=False)
    kept_ok = [ln for ln in kept if json.loads(ln)["row"]["status"] == "ok"]
    retried = [*lost_files, *(json.loads(ln)["file"] for ln in kept if json.loads(ln)["row"]["status"] == "error")]
    assert result.n_skipped == len(kept_ok) and result.n_processed == len(retried)
    assert model.seen == sum(1 for n in lost_files if n != "broken.jpg")
    assert _snapshot(out) == _snapshot(reference)
    # every image was finished once by the first run; only the lost ones (and the failed file) again
    finished = [r["file"] for r in _timings(out)]
    assert sorted(finished) == sorted([*(r["file"] for r in _rows(reference)), *retried])


def test_resume_after_kill_mid_journal_line_and_foreign_csv(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=2)
    out = tmp_path / "out"
    segment_folder(tiny_model, src, out, progress=False)
    reference = _snapshot(out)
    text = (out / "journal.jsonl").read_text()
    (out / "journal.jsonl").write_text(text[:9])  # killed while writing the first line
    model = _CountingModel(tiny_model)
    segment_folder(model, src, out, progress=False)
    assert _snapshot(out) == reference and model.seen == 2
    assert len(_journal(out)) == 2  # the fragment was cut off, not kept
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.csv").write_text("id,dice\nISIC_0000000,0.9\n")  # not ours: no run.json
    for overwrite in (False, True):  # not ours: refused, even with overwrite
        with pytest.raises(FileExistsError, match="no skinseg run there wrote it"):
            segment_folder(tiny_model, src, other, progress=False, overwrite=overwrite)
    assert (other / "results.csv").read_text().startswith("id,dice")


def test_other_settings_need_overwrite(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=2)
    out = tmp_path / "out"
    segment_folder(tiny_model, src, out, progress=False)
    with pytest.raises(ConfigError, match="threshold"):
        segment_folder(tiny_model, src, out, threshold=0.3, progress=False)
    model = _CountingModel(tiny_model)
    result = segment_folder(model, src, out, threshold=0.3, overwrite=True, progress=False)
    assert result.n_processed == 2 and model.seen == 2
    assert json.loads((out / "run.json").read_text())["settings"]["threshold"] == 0.3


def test_measure_setting_is_part_of_the_run(tiny_model, tmp_path: Path) -> None:
    from skinseg.features import FEATURE_NAMES

    src = tmp_path / "in"
    _good_images(src, n=2)
    out = tmp_path / "out"
    segment_folder(tiny_model, src, out, progress=False)
    assert segment_folder(tiny_model, src, out, progress=False).n_skipped == 2
    with pytest.raises(ConfigError, match="measure: False -> True"):
        segment_folder(tiny_model, src, out, measure=True, progress=False)
    with pytest.raises(ConfigError, match="pixel_size_mm"):
        segment_folder(tiny_model, src, out, pixel_size_mm=0.01, progress=False)  # needs measure
    result = segment_folder(
        tiny_model, src, out, measure=True, pixel_size_mm=0.01, overwrite=True, progress=False
    )
    assert result.n_processed == 2
    rows = _rows(out)
    assert tuple(rows[0]) == result_columns(True) == RESULT_COLUMNS + FEATURE_NAMES


def test_a_run_of_an_older_skinseg_is_not_resumed(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=2)
    out = tmp_path / "out"
    segment_folder(tiny_model, src, out, progress=False)
    run = json.loads((out / "run.json").read_text())
    del run["format_version"]  # as skinseg 0.1.0 wrote it
    (out / "run.json").write_text(json.dumps(run))
    with pytest.raises(ConfigError, match="older skinseg"):
        segment_folder(tiny_model, src, out, progress=False)
    assert segment_folder(tiny_model, src, out, overwrite=True, progress=False).n_processed == 2


def test_existing_outputs_without_a_run_are_not_replaced(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0_segmentation.png").write_bytes(b"someone else's mask")
    for overwrite in (False, True):  # --help: overwrite touches only the files skinseg wrote
        with pytest.raises(FileExistsError, match="no skinseg run there wrote it"):
            segment_folder(tiny_model, src, out, progress=False, overwrite=overwrite)
        assert (out / "img0_segmentation.png").read_bytes() == b"someone else's mask"
    assert sorted(p.name for p in out.iterdir()) == [".skinseg.lock", "img0_segmentation.png"]


def test_overwrite_of_a_run_refuses_foreign_files_before_removing_anything(tiny_model, tmp_path: Path,
                                                                           ) -> None:
    src = tmp_path / "in"
    _good_images(src, n=3)
    (src / "img2.jpg").rename(tmp_path / "img2.jpg")  # added to the input after the first run
    out = tmp_path / "out"
    segment_folder(tiny_model, src, out, progress=False)
    reference = _snapshot(out)
    (tmp_path / "img2.jpg").rename(src / "img2.jpg")
    (out / "img2_segmentation.png").write_bytes(b"an expert's mask")  # at an output path; no journal lists it
    (out / "notes.txt").write_text("mine")  # not an output path: never looked at
    with pytest.raises(FileExistsError, match="img2_segmentation.png.*not even with --overwrite"):
        segment_folder(tiny_model, src, out, threshold=0.3, overwrite=True, progress=False)
    after = _snapshot(out)  # nothing was removed before the refusal
    assert after.pop("img2_segmentation.png") == b"an expert's mask" and after.pop("notes.txt") == b"mine"
    assert after == reference
    (out / "img2_segmentation.png").unlink()
    result = segment_folder(tiny_model, src, out, threshold=0.3, overwrite=True, progress=False)
    assert result.n_processed == 3 and (out / "notes.txt").read_text() == "mine"


def test_a_replaced_input_with_the_same_size_and_mtime_is_redone_only_with_verify_inputs(
        tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=1)
    first = src / "a.bmp"  # uncompressed: another picture of the same size has the same byte size
    cv2.imwrite(str(first), synthetic_lesion((40, 64), rng=1)[0])
    out = tmp_path / "out"
    segment_folder(tiny_model, src, out, progress=False, verify_inputs=True)
    lines = _journal(out)
    assert all(len(line["input"]) == 3 and line["input"][2].startswith("blake2b:") for line in lines)
    st = first.stat()
    cv2.imwrite(str(first), synthetic_lesion((40, 64), rng=2)[0])  # replaced ...
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... keeping the size and the mtime
    assert first.stat().st_size == st.st_size and first.stat().st_mtime_ns == st.st_mtime_ns
    model = _CountingModel(tiny_model)
    assert segment_folder(model, src, out, progress=False).n_processed == 0  # documented: size + mtime only
    result = segment_folder(model, src, out, progress=False, verify_inputs=True)
    assert result.n_processed == 1 and model.seen == 1
    assert segment_folder(model, src, out, progress=False, verify_inputs=True).n_processed == 0


def test_refuses_to_write_into_the_input_folder(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=1)
    before = sorted(p.name for p in src.rglob("*"))
    for out in (src, src / "masks", tmp_path / "in" / "." / "x"):
        with pytest.raises(ConfigError, match="input folder"):
            segment_folder(tiny_model, src, out, progress=False)
    assert sorted(p.name for p in src.rglob("*")) == before
    with pytest.raises(FileNotFoundError):
        check_output_dir(tmp_path / "missing", tmp_path / "out")


def test_usage_errors(tiny_model, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="No images"):
        segment_folder(tiny_model, tmp_path / "empty", tmp_path / "out", progress=False)
    src = tmp_path / "in"
    _good_images(src, n=1)
    shutil.copy(src / "img0.jpg", src / "img0.png")
    with pytest.raises(ConfigError, match="same stem"):
        segment_folder(tiny_model, src, tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="batch_size"):
        segment_folder(tiny_model, src, tmp_path / "out", batch_size=0, progress=False)
    with pytest.raises(ConfigError, match="preprocess"):
        segment_folder(tiny_model, src, tmp_path / "out", preprocess="dullrazor", progress=False)


def test_preprocess_is_applied_and_recorded(tiny_model, tmp_path: Path) -> None:
    from skinseg.preprocess import PreprocessConfig

    src = tmp_path / "in"
    _good_images(src, n=2)
    out = tmp_path / "out"
    segment_folder(
        tiny_model, src, out, preprocess=PreprocessConfig(denoise="median"), overlay=False, progress=False
    )
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["preprocess"]["denoise"] == "median" and settings["overlay"] is False
    assert not (out / "overlays").exists()


# --------------------------------------------------------------------------- overlay


def test_draw_contour_overlay() -> None:
    image = np.full((40, 50, 3), 100, np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[10:30, 15:35] = True
    out = draw_contour_overlay(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 100).all()  # input not modified
    green = (out[..., 0] == 0) & (out[..., 1] == 255) & (out[..., 2] == 0)
    assert green[10, 20] and green[29, 20] and green[20, 15]
    assert not green[20, 25] and not green[0, 0]  # interior and background unchanged
    assert (draw_contour_overlay(image, np.zeros((40, 50), bool)) == image).all()
    with pytest.raises(ConfigError):
        draw_contour_overlay(image, mask[:10])


def test_an_error_row_always_names_the_file(tiny_model, tmp_path: Path, monkeypatch) -> None:
    """Issue 16 (12): an I/O error raised without a file name gave a row that did not name the file."""
    import errno

    import skinseg.runs.storage as seg  # every engine writes through its store's atomic write

    src = tmp_path / "in"
    _good_images(src, n=2)
    real = seg.atomic_write

    def failing(path, data, **kw):
        if "img1" in str(path):
            raise OSError(errno.EIO, "Input/output error")  # no filename attached
        return real(path, data, **kw)

    monkeypatch.setattr(seg, "atomic_write", failing)
    result = segment_folder(tiny_model, src, tmp_path / "out", progress=False)
    rows = {r["file"]: r for r in _rows(tmp_path / "out")}
    assert result.n_failed == 1 and rows["img1.png"]["status"] == "error"
    assert rows["img1.png"]["error"].startswith("img1.png: ") and "Input/output error" in rows["img1.png"]["error"]


def test_segment_on_one_image_names_image_in_errors(tiny_model) -> None:
    """Issue 16 (12): errors from segment(model, img) named 'images[0]' instead of 'image'."""
    import skinseg as ss
    from skinseg.errors import InvalidImageError

    with pytest.raises(InvalidImageError, match="`image`") as info:
        ss.segment(tiny_model, np.zeros((8, 8, 4), np.uint8))
    assert "images[0]" not in str(info.value)


def test_recursive_runs_skip_folders_holding_an_earlier_run(tiny_model, tmp_path: Path) -> None:
    project = tmp_path / "P"
    _good_images(project / "imgs", n=2)
    segment_folder(tiny_model, project / "imgs", project, progress=False)  # outputs beside the images
    with pytest.raises(ConfigError, match="1 folder.* hold an earlier skinseg run.*--include-runs"):
        segment_folder(tiny_model, project, tmp_path / "P2", recursive=True, progress=False)
    src = tmp_path / "in"
    _good_images(src, n=1)
    _good_images(src / "sub", n=1)
    shutil.copytree(project, src / "old")  # an earlier run's folder inside the input
    result = segment_folder(tiny_model, src, tmp_path / "out", recursive=True, progress=False)
    assert result.n_images == 2 and result.not_taken["skinseg_run"] == 1
    taken = segment_folder(tiny_model, src, tmp_path / "out2", recursive=True, include_runs=True,
                           progress=False)
    keys = [r["file"] for r in _rows(tmp_path / "out2")]
    assert taken.n_images == 6 and "old/overlays/img0_overlay.png" in keys  # asked for: taken


def test_a_run_that_finished_no_image_does_not_lock_its_settings(tiny_model, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_images(src, n=2)
    out = tmp_path / "out"

    class Broken(_CountingModel):
        def forward(self, x):
            raise ImportError("the model cannot run here (e.g. a missing package)")

    with pytest.raises(ImportError):
        segment_folder(Broken(tiny_model), src, out, threshold=0.3, progress=False)
    assert (out / "run.json").is_file() and not _journal(out)
    result = segment_folder(tiny_model, src, out, threshold=0.6, progress=False)  # other settings: a retry
    assert result.n_ok == 2
    assert json.loads((out / "run.json").read_text())["settings"]["threshold"] == 0.6
    with pytest.raises(ConfigError, match="threshold: 0.6 -> 0.3"):  # now something is done: locked
        segment_folder(tiny_model, src, out, threshold=0.3, progress=False)


def test_each_input_is_read_from_disk_once(tiny_model, tmp_path: Path, monkeypatch) -> None:
    """Issue 26: the default path read every input twice (the header for the pixel budget, then the decode)."""
    import builtins

    src = tmp_path / "in"
    paths = {str(p) for p in _good_images(src, n=4)}
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if str(file) in paths:
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    result = segment_folder(tiny_model, src, tmp_path / "out", progress=False)
    assert result.n_ok == 4
    assert sorted(opened) == sorted(paths)  # once each
