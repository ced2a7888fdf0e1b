"""skinseg.runs.classify_folder on the folder-run skeleton: the segment command's masks, the model's classes in
the CSV (a tiny seven-class classifier), segment's number format and error rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from skinseg.io import write_image, write_mask
from skinseg.runs import classify_folder, segment_folder
from skinseg.testing import synthetic_lesion

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
import skinseg.classify as C  # noqa: E402

HAM = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")


@pytest.fixture(scope="module")
def tiny_classifier():
    torch.manual_seed(0)
    return C.create_classifier(pretrained=False, input_size=64).eval()


@pytest.fixture(scope="module")
def seven_class_dir(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    model = C.create_classifier(pretrained=False, input_size=64, class_names=HAM)
    with torch.no_grad():
        model.network.get_classifier().weight.normal_(0, 0.5)
    return C.save_classifier(model, tmp_path_factory.mktemp("ham") / "clf")


def _folder(root: Path, n: int = 4) -> tuple[Path, Path]:
    src, masks = root / "images", root / "masks"
    src.mkdir(parents=True)
    masks.mkdir()
    for i in range(n):
        image, mask = synthetic_lesion((60 + 4 * i, 80 - 3 * i), rng=i)
        write_image(src / f"ISIC_{i}.{'png' if i % 2 else 'jpg'}", image)
        write_mask(masks / f"ISIC_{i}_segmentation.png", mask)
    return src, masks


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_classify_masks_are_the_segment_commands_masks(tiny_classifier, tmp_path):
    """The masks come from the same Predictor path and default backend (the shipped int8 ONNX model)."""
    src, _ = _folder(tmp_path)
    segment_folder("default", src, tmp_path / "seg", overlay=False, progress=False)
    result = classify_folder(src, tmp_path / "cls", classifier=tiny_classifier, segmenter="default", measure=False,
                             progress=False)
    assert result.n_ok == 4
    for p in sorted(src.iterdir()):
        seg = (tmp_path / "seg" / f"{p.stem}_segmentation.png").read_bytes()
        assert (tmp_path / "cls" / "masks" / f"{p.stem}_mask.png").read_bytes() == seg
    import json

    settings = json.loads((tmp_path / "cls" / "run.json").read_text())["settings"]["segmenter"]
    assert (settings["backend"], settings["precision"]) == ("onnx", "int8")


def test_seven_class_model_columns_come_from_its_metadata(seven_class_dir, tmp_path):
    src, masks = _folder(tmp_path)
    result = classify_folder(src, tmp_path / "out", classifier=seven_class_dir, masks_dir=masks, progress=False)
    assert result.n_ok == 4
    with open(result.results_csv, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header[6:15] == [*(f"p_{c}" for c in HAM), "p_melanoma", "predicted_label", "confidence"][:9]
    reference = C.ClassifierPredictor.of(C.load_classifier(seven_class_dir))
    from skinseg.io import read_image, read_mask

    for row in _rows(result.results_csv):
        p = np.array([float(row[f"p_{c}"]) for c in HAM])
        assert abs(p.sum() - 1) < 1e-4
        assert row["p_melanoma"] == row["p_mel"]  # the melanoma class, named by the model's metadata
        assert row["predicted_label"] == HAM[int(np.argmax(p))] and row["predicted_label"] in HAM
        stem = Path(row["file"]).stem
        expected = reference.predict_proba(read_image(src / row["file"]), read_mask(masks / f"{stem}_segmentation.png"))
        np.testing.assert_allclose(p, expected, atol=2e-5)  # the ONNX export run here against torch


def test_the_three_class_model_keeps_its_columns(tiny_classifier, tmp_path):
    src, masks = _folder(tmp_path, n=2)
    result = classify_folder(src, tmp_path / "out", classifier=tiny_classifier, masks_dir=masks, measure=False,
                             progress=False)
    with open(result.results_csv, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert header == ["file", "status", "error_type", "error", "mask_source", "mask_empty", "p_melanoma", "p_nevus",
                      "p_seborrheic_keratosis", "predicted_label", "confidence"]
    from skinseg.runs.classify import classification_columns

    assert classification_columns(["mel", "nv"], False)[6:9] == ("p_mel", "p_nv", "p_melanoma")
    assert "p_melanoma" not in classification_columns(["benign", "malignant"], False)  # no melanoma class


def test_numbers_and_error_rows_are_the_segment_commands(tiny_classifier, tmp_path):
    """Six significant digits and empty cells for missing values; bad files get segment's error rows."""
    src, masks = _folder(tmp_path, n=2)
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.png").write_bytes(b"lesion notes\n")
    seg = segment_folder("default", src, tmp_path / "seg", measure=True, progress=False)
    cls = classify_folder(src, tmp_path / "cls", classifier=tiny_classifier, segmenter="default", progress=False)
    seg_rows = {r["file"]: r for r in _rows(seg.results_csv)}
    cls_rows = {r["file"]: r for r in _rows(cls.results_csv)}
    for name in ("empty.jpg", "notes.png"):
        for key in ("status", "error_type", "error"):
            assert cls_rows[name][key] == seg_rows[name][key]
    text = Path(cls.results_csv).read_text()
    assert "nan" not in text.lower()
    for row in cls_rows.values():
        if row["status"] != "ok":
            continue
        for key in ("p_melanoma", "p_nevus", "confidence", "asymmetry", "border_compactness", "diameter_px"):
            assert row[key] == f"{float(row[key]):.6g}"  # six significant digits, as segment writes them
        assert row["diameter_mm"] == "" and row["area_mm2"] == ""  # no pixel size: empty, not nan
        for key in ("asymmetry", "border_solidity", "color_count"):  # the same measurements as segment's
            assert row[key] == seg_rows[row["file"]][key]
