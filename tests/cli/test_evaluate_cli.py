"""``skinseg evaluate`` in-process: table and JSON output, report files, size mismatch, unmatched files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skinseg.cli import main
from skinseg.io import write_mask


def _masks(tmp_path: Path) -> tuple[Path, Path]:
    """Predictions and truths for 3 paired ISIC ids, plus one unpaired file on each side."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    rng = np.random.default_rng(0)
    for i in range(3):
        t = np.zeros((30, 40), bool)
        t[5:20, 8 + i : 30] = True
        p = t.copy()
        p[rng.integers(0, 30, 20), rng.integers(0, 40, 20)] ^= True
        write_mask(truth / f"ISIC_000000{i}.png", t)
        write_mask(pred / f"ISIC_000000{i}_segmentation.png", p)
    write_mask(pred / "ISIC_0000009_segmentation.png", np.zeros((30, 40), bool))
    write_mask(truth / "ISIC_0000007.png", np.zeros((30, 40), bool))
    return pred, truth


def test_table_on_stdout_with_unmatched_counts(tmp_path: Path, capsys) -> None:
    pred, truth = _masks(tmp_path)
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--allow-missing"]) == 0
    out, err = capsys.readouterr()
    assert "macro mean over 3 images (ISIC)" in out and "pooled over all pixels" in out
    assert "Dice" in out and "Thresholded Jaccard" in out
    assert "unmatched: 1 predictions without a truth, 1 truths without a prediction" in out
    assert "ISIC_0000009_segmentation.png" in err and "ISIC_0000007.png" in err


def test_json_and_report_files(tmp_path: Path, capsys) -> None:
    pred, truth = _masks(tmp_path)
    report = tmp_path / "report"
    args = ["evaluate", str(pred), str(truth), "--format", "json", "--out", str(report), "--allow-missing"]
    assert main([*args, "--quiet"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_images"] == 3 and 0 < payload["macro"]["dice"]["mean"] < 1
    assert payload["n_unmatched_predictions"] == 1 and payload["n_unmatched_truths"] == 1
    assert payload["unmatched_truths"][0].endswith("ISIC_0000007.png")
    for name in ("per_image.csv", "summary.json", "evaluation.png"):
        assert (report / name).is_file()
    assert json.loads((report / "summary.json").read_text())["n_images"] == 3


def test_size_mismatch_exits_2_naming_both_sizes(tmp_path: Path, capsys) -> None:
    pred, truth = _masks(tmp_path)
    write_mask(pred / "ISIC_0000001_segmentation.png", np.ones((15, 20), bool), overwrite=True)
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--allow-missing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "(15, 20)" in err and "(30, 40)" in err and "ISIC_0000001" in err
    assert (
        main(["evaluate", str(pred), str(truth), "--resize-predictions", "--quiet", "--allow-missing"]) == 0
    )
    assert "1 predictions resized" in capsys.readouterr().out


def test_suffixes_and_no_pairs(tmp_path: Path, capsys) -> None:
    pred, truth = tmp_path / "p", tmp_path / "t"
    write_mask(pred / "lesion_a_pred.png", np.eye(8, dtype=bool))
    write_mask(truth / "lesion_a_gt.png", np.eye(8, dtype=bool))
    assert main(["evaluate", str(pred), str(truth), "--quiet"]) == 2
    assert "No prediction" in capsys.readouterr().err
    code = main(
        [
            "evaluate",
            str(pred),
            str(truth),
            "--pred-suffix",
            "_pred",
            "--truth-suffix",
            "_gt",
            "--format",
            "json",
            "--quiet",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["macro"]["dice"]["mean"] == pytest.approx(1.0)


def test_segment_then_evaluate(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    from skinseg.io import write_image
    from skinseg.models import create_segmenter, save_checkpoint
    from skinseg.testing import synthetic_lesion

    torch.manual_seed(0)
    model = create_segmenter(
        "unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), input_size=64
    )
    ckpt = save_checkpoint(model, tmp_path / "ckpt")
    images, truth = tmp_path / "images", tmp_path / "truth"
    for i in range(2):
        image, mask = synthetic_lesion((40, 56), rng=i)
        write_image(images / f"ISIC_100000{i}.jpg", image)
        write_mask(truth / f"ISIC_100000{i}_segmentation.png", mask)
    assert main(["segment", str(images), "-o", str(tmp_path / "out"), "--model", str(ckpt), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "out"), str(truth), "--format", "json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == 2


def test_zero_one_masks_are_scored_and_flagged(tmp_path: Path, capsys) -> None:
    import cv2

    pred, truth = tmp_path / "p", tmp_path / "t"
    pred.mkdir()
    truth.mkdir()
    t = np.zeros((60, 80), np.uint8)
    t[20:50, 20:60] = 1
    p = np.zeros((60, 80), np.uint8)
    p[0:10, 0:10] = 1
    cv2.imwrite(str(truth / "ISIC_0000001.png"), t)
    cv2.imwrite(str(pred / "ISIC_0000001.png"), p)
    assert main(["evaluate", str(pred), str(truth), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Dice" in out and "1.0000" not in out.split("Sensitivity")[0]
    assert "{0, 1}" in out and "ISIC scorer" in out
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["macro"]["dice"]["mean"] == 0.0
    assert payload["n_zero_one_predictions"] == 1 and payload["n_zero_one_truths"] == 1


def test_missing_prediction_exits_3_and_lists_it(tmp_path: Path, capsys) -> None:
    pred, truth = _masks(tmp_path)
    assert main(["evaluate", str(pred), str(truth), "--quiet"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error:") and "ISIC_0000007.png" in captured.err
    assert "--allow-missing" in captured.err and "--missing-as-empty" in captured.err


def test_allow_missing_and_missing_as_empty(tmp_path: Path, capsys) -> None:
    pred, truth = _masks(tmp_path)
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--allow-missing", "--format", "json"]) == 0
    skipped = json.loads(capsys.readouterr().out)
    assert skipped["n_images"] == 3 and skipped["missing"] == "skip" and skipped["n_missing_predictions"] == 1
    assert any("not scored" in n for n in skipped["notes"])
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--allow-missing"]) == 0
    assert "1 truth mask(s) had no prediction and were not scored" in capsys.readouterr().out
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--missing-as-empty", "--format", "json"]) == 0
    empty = json.loads(capsys.readouterr().out)
    assert empty["n_images"] == 4 and empty["missing"] == "empty"
    # the truth without a prediction is empty, so its empty prediction scores Dice 1.0 (ISIC convention)
    assert empty["macro"]["dice"]["mean"] == pytest.approx((skipped["macro"]["dice"]["mean"] * 3 + 1) / 4)
    with pytest.raises(SystemExit):
        main(["evaluate", str(pred), str(truth), "--allow-missing", "--missing-as-empty"])
    capsys.readouterr()


def test_ids_file_selects_a_subset(tmp_path: Path, capsys) -> None:
    pred, truth = _masks(tmp_path)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "id,split\nISIC_0000000,test\nISIC_0000001,test\nISIC_0000002,train\nISIC_0000007,train\n"
    )
    args = ["evaluate", str(pred), str(truth), "--quiet", "--format", "json", "--ids", str(manifest)]
    assert main([*args, "--split", "test"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_images"] == 2 and payload["n_unmatched_truths"] == 0
    assert main(args) == 3  # ISIC_0000007 is listed and has no prediction
    assert "ISIC_0000007" in capsys.readouterr().err
    listing = tmp_path / "ids.txt"
    listing.write_text("ISIC_0000001\n\nISIC_0000002\n")
    assert (
        main(["evaluate", str(pred), str(truth), "--quiet", "--format", "json", "--ids", str(listing)]) == 0
    )
    assert json.loads(capsys.readouterr().out)["n_images"] == 2
    assert main([*args, "--split", "nope"]) == 2
    assert "no row with split 'nope'" in capsys.readouterr().err


def test_unwritable_report_folder_exits_2_naming_it(tmp_path: Path, capsys) -> None:
    pred, truth = _masks(tmp_path)
    (truth / "ISIC_0000007.png").unlink()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for flag in ("--out", "--report"):
        target = blocker / "report"
        assert main(["evaluate", str(pred), str(truth), "--quiet", flag, str(target)]) == 2
        err = capsys.readouterr().err
        assert (
            err.startswith("error: cannot write") and str(blocker) in err and "a folder you can write" in err
        )


def test_failed_report_write_leaves_no_temp_files(tmp_path: Path, capsys, monkeypatch) -> None:
    import os

    pred, truth = _masks(tmp_path)
    (truth / "ISIC_0000007.png").unlink()
    report = tmp_path / "report"
    real_replace = os.replace

    def failing_replace(src, dst, *a, **kw):
        if str(dst).endswith(("summary.json", "index.html")):
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", failing_replace)
    for flag in ("--out", "--report"):
        code = main(["evaluate", str(pred), str(truth), "--quiet", flag, str(report)])
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot write") and str(report) in err
        leftovers = [p.name for p in report.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
        assert leftovers == []


def test_pairs_on_the_whole_isic_id(tmp_path: Path, capsys) -> None:
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    mask = np.zeros((30, 40), bool)
    mask[5:20, 8:30] = True
    write_mask(truth / "ISIC_0006671_segmentation.png", mask)
    write_mask(pred / "ISIC_00066719_segmentation.png", mask)  # another (8-digit) id, not ISIC_0006671
    write_mask(pred / "ISIC_0006671_segmentation.png", np.zeros_like(mask))
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_images"] == 1 and payload["macro"]["dice"]["mean"] == 0.0  # paired with the empty one
    assert [Path(p).name for p in payload["unmatched_predictions"]] == ["ISIC_00066719_segmentation.png"]


def test_not_taken_entries_are_counted_and_named(tmp_path: Path, capsys) -> None:
    pred, truth = _masks(tmp_path)
    write_mask(truth / "more" / "ISIC_0000005.png", np.zeros((30, 40), bool))  # a mask in a sub-folder
    (truth / "notes.txt").write_text("x")
    (pred / "run.json").write_text(json.dumps({"format": "skinseg-segment-run", "settings": {}}))
    (pred / "overlays").mkdir()  # a skinseg run's own files: expected, not reported
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--allow-missing", "--format", "json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    not_taken = {"not_an_image_name": ["truth_dir/notes.txt"], "subfolder": ["truth_dir/more"]}
    assert payload["not_taken"] == not_taken
    assert payload["n_not_taken"] == 2
    assert any("sub-folder(s) not searched" in n and "truth_dir/more" in n for n in payload["notes"])
    assert main(["evaluate", str(pred), str(truth), "--quiet", "--allow-missing"]) == 0
    assert "note: 1 sub-folder(s) not searched" in capsys.readouterr().out


def test_the_same_folder_twice_is_refused(tmp_path: Path, capsys) -> None:
    _, truth = _masks(tmp_path)
    (tmp_path / "link").symlink_to(truth)
    for second in (truth, tmp_path / "link", truth / ".." / "truth"):
        assert main(["evaluate", str(truth), str(second), "--quiet"]) == 2
        assert "same folder" in capsys.readouterr().err
