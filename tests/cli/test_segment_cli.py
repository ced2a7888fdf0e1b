"""``skinseg segment`` in-process: outputs, bad files and exit codes, resume, --overwrite, refusals."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from skinseg.cli import main
from skinseg.io import read_image, write_image
from skinseg.testing import synthetic_lesion

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from skinseg.models import create_segmenter, save_checkpoint

    torch.manual_seed(0)
    model = create_segmenter(
        "unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), input_size=64
    )
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    src = tmp_path / "images"
    src.mkdir()
    for i in range(4):
        image, _ = synthetic_lesion((48 + 5 * i, 64), rng=i)
        write_image(src / f"ISIC_000000{i}.jpg", image)
    return src


def _segment(src: Path, out: Path, checkpoint: Path, *extra: str) -> int:
    return main(["segment", str(src), "-o", str(out), "--model", str(checkpoint), "--quiet", *extra])


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_segment_writes_masks_overlays_and_csv(
    images: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert _segment(images, out, checkpoint) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] == 4 and summary["failed"] == 0
    for path in sorted(images.iterdir()):
        mask = cv2.imread(str(out / f"{path.stem}_segmentation.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == read_image(path).shape[:2] and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 255}
        assert (out / "overlays" / f"{path.stem}_overlay.png").is_file()
    assert [r["file"] for r in _rows(out)] == sorted(p.name for p in images.iterdir())


def test_bad_files_exit_3_and_are_listed(images: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    (images / "empty.jpg").write_bytes(b"")
    (images / "page.png").write_bytes(b"<html>404</html>")
    image, _ = synthetic_lesion((40, 40), rng=9)
    cv2.imwrite(str(images / "grey.png"), image[..., 0])
    out = tmp_path / "out"
    assert _segment(images, out, checkpoint) == 3
    err = capsys.readouterr().err
    assert "3 failed" in err and "empty.jpg: EmptyFileError" in err and "page.png: NotAnImageError" in err
    rows = {r["file"]: r for r in _rows(out)}
    assert rows["grey.png"]["error_type"] == "GrayscaleImageError"
    assert sum(r["status"] == "ok" for r in rows.values()) == 4
    # --convert is a different setting: resuming needs --overwrite
    assert _segment(images, out, checkpoint, "--convert") == 2
    assert "other settings" in capsys.readouterr().err
    assert _segment(images, out, checkpoint, "--convert", "--overwrite") == 3
    assert {r["file"]: r["status"] for r in _rows(out)}["grey.png"] == "ok"


def test_rerun_resumes_and_overwrite_redoes(images: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _segment(images, out, checkpoint) == 0
    before = (out / "results.csv").read_bytes()
    lines = (out / "journal.jsonl").read_text().splitlines(keepends=True)
    (out / "journal.jsonl").write_text("".join(lines[:-1]) + lines[-1][:10])  # killed mid-line
    (out / "results.csv").unlink()  # ... before the results were written
    capsys.readouterr()
    assert _segment(images, out, checkpoint) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["skipped"], summary["processed"]) == (3, 1)
    assert (out / "results.csv").read_bytes() == before
    assert _segment(images, out, checkpoint, "--overwrite") == 0
    assert json.loads(capsys.readouterr().out)["processed"] == 4


def test_refuses_output_inside_input(images: Path, checkpoint: Path, capsys) -> None:
    listing = sorted(images.rglob("*"))
    assert _segment(images, images, checkpoint) == 2
    assert _segment(images, images / "out", checkpoint) == 2
    err = capsys.readouterr().err
    assert err.count("error: `out_dir` must not be the input folder") == 2
    assert sorted(images.rglob("*")) == listing


def test_usage_errors_exit_2(images: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _segment(empty, tmp_path / "o1", checkpoint) == 2
    assert "No images found" in capsys.readouterr().err
    assert _segment(tmp_path / "missing", tmp_path / "o2", checkpoint) == 2
    assert main(["segment", str(images), "-o", str(tmp_path / "o3"), "--model", str(tmp_path / "nope")]) == 2
    assert "error:" in capsys.readouterr().err
    assert _segment(images, tmp_path / "o4", checkpoint, "--batch-size", "0") == 2


def test_options_no_overlay_suffix_recursive_preprocess(
    images: Path, checkpoint: Path, tmp_path: Path
) -> None:
    sub = images / "visit2"
    sub.mkdir()
    write_image(sub / "late.png", synthetic_lesion((50, 60), rng=5)[0])
    out = tmp_path / "out"
    code = _segment(
        images,
        out,
        checkpoint,
        "--no-overlay",
        "--mask-suffix",
        "_mask",
        "--recursive",
        "--hair-removal",
        "dullrazor",
        "--denoise",
        "median",
        "--tta",
        "--threshold",
        "0.4",
        "--batch-size",
        "3",
        "--workers",
        "1",
    )
    assert code == 0
    assert (out / "ISIC_0000000_mask.png").is_file() and (out / "visit2" / "late_mask.png").is_file()
    assert not (out / "overlays").exists()
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert (
        settings["preprocess"]["hair_removal"] == "dullrazor"
        and settings["preprocess"]["denoise"] == "median"
    )
    assert settings["tta"] is True and settings["threshold"] == 0.4


def test_measure_adds_abcd_columns(images: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    from skinseg.features import FEATURE_NAMES

    out = tmp_path / "out"
    assert _segment(images, out, checkpoint, "--measure", "--workers", "1") == 0
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header[-len(FEATURE_NAMES) :] == list(FEATURE_NAMES) and header[0] == "file"
    for row in _rows(out):
        assert row["status"] == "ok"
        if int(row["lesion_area_px"]) == 0:  # nothing to measure: empty cells
            assert all(row[name] == "" for name in FEATURE_NAMES)
            continue
        bw, bh = int(row["bbox_w"]), int(row["bbox_h"])
        assert int(row["area_px"]) == int(row["lesion_area_px"])
        # the Feret diameter (between pixel centres) lies between the bbox side and diagonal
        assert max(bw, bh) - 1 <= float(row["diameter_px"]) <= math.hypot(bw - 1, bh - 1) + 1e-3
        assert row["diameter_mm"] == "" and row["area_mm2"] == ""  # no --pixel-size-mm
        assert 1 <= int(row["color_count"]) <= 6
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["measure"] is True and settings["pixel_size_mm"] is None


def test_measure_of_a_whole_image_lesion_and_resume(
    images: Path, checkpoint: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    # threshold 0: every pixel is lesion, so the measurements are those of the image rectangle
    args = ("--measure", "--pixel-size-mm", "0.02", "--threshold", "0", "--no-overlay")
    assert _segment(images, out, checkpoint, *args) == 0
    rows = _rows(out)
    assert len(rows) == 4
    for row in rows:
        w, h = int(row["width"]), int(row["height"])
        assert int(row["area_px"]) == w * h
        assert float(row["diameter_px"]) == pytest.approx(math.hypot(w - 1, h - 1), abs=1e-3)
        assert float(row["diameter_mm"]) == pytest.approx(0.02 * math.hypot(w - 1, h - 1), rel=1e-4)
        assert float(row["area_mm2"]) == pytest.approx(0.02**2 * w * h, rel=1e-4)
        # 4 sqrt(variance of the x coordinates 0 .. w-1); every image is wider than it is high
        assert float(row["major_axis_px"]) == pytest.approx(4 * math.sqrt((w * w - 1) / 12), rel=1e-4)
        assert float(row["border_solidity"]) == 1.0  # a rectangle is convex
        assert float(row["asymmetry"]) < 0.05
    before = (out / "results.csv").read_bytes()
    capsys.readouterr()
    assert _segment(images, out, checkpoint, *args) == 0  # same settings: resumes, nothing to do
    assert json.loads(capsys.readouterr().out)["skipped"] == 4
    assert (out / "results.csv").read_bytes() == before
    # other measurement settings would mix columns or units: refused until --overwrite
    assert _segment(images, out, checkpoint, "--threshold", "0", "--no-overlay") == 2
    assert "other settings (measure: True -> False, pixel_size_mm: 0.02 -> None)" in capsys.readouterr().err
    assert _segment(images, out, checkpoint, *args[:-1], "--pixel-size-mm", "0.01") == 2
    assert _segment(images, out, checkpoint, "--threshold", "0", "--no-overlay", "--overwrite") == 0
    assert "diameter_px" not in _rows(out)[0]


def test_pixel_size_needs_measure(images: Path, checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert _segment(images, tmp_path / "out", checkpoint, "--pixel-size-mm", "0.02") == 2
    assert "--pixel-size-mm is used only by the measurements" in capsys.readouterr().err
    assert _segment(images, tmp_path / "out", checkpoint, "--measure", "--pixel-size-mm", "-1") == 2
    assert "pixel_size_mm" in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.csv").exists()


def test_help_documents_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["segment", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes" in text and "3 some files failed" in text and "resume" in text


def test_tta_defaults_to_the_models_stored_setting(images: Path, tmp_path: Path, capsys) -> None:
    from skinseg.models import create_segmenter, save_checkpoint

    torch.manual_seed(0)
    model = create_segmenter(
        "unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), input_size=64
    )
    model.config = model.config.replace(tta=True)
    ckpt = save_checkpoint(model, tmp_path / "tta_model")
    for flag, expected in [((), True), (("--no-tta",), False), (("--tta",), True)]:
        out = tmp_path / f"out{len(flag)}{expected}"
        assert _segment(images, out, ckpt, "--no-overlay", *flag) == 0
        assert json.loads((out / "run.json").read_text())["settings"]["tta"] is expected
    capsys.readouterr()
