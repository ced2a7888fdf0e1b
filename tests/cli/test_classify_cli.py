"""``skinseg classify`` in-process: CSV columns, masks vs segmenter, Grad-CAM, bad files, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from skinseg.cli import main
from skinseg.io import write_image
from skinseg.testing import synthetic_lesion

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    import skinseg.classify as C
    from skinseg.models import create_segmenter, save_checkpoint

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    seg = create_segmenter(
        "unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), input_size=64
    )
    clf = C.ClassifierEnsemble(
        [
            C.create_classifier(pretrained=False, input_size=64),
            C.create_classifier(pretrained=False, input_size=64, crop_mode="mask_channel"),
        ]
    )
    return save_checkpoint(seg, root / "seg"), C.save_classifier(clf, root / "clf")


@pytest.fixture
def folder(tmp_path: Path, make_lesion_folder) -> tuple[Path, Path]:
    return make_lesion_folder(tmp_path, "ISIC_{i}.jpg")


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "classification.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_classify_with_masks_writes_probabilities_features_and_gradcam(folder, models, tmp_path, capsys):
    src, masks = folder
    _, clf = models
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in list(src.iterdir()) + list(masks.iterdir())}
    code = main(
        [
            "classify",
            str(src),
            "-o",
            str(out),
            "--classifier",
            str(clf),
            "--masks",
            str(masks),
            "--gradcam",
            "--pixel-size-mm",
            "0.05",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["classified"] == 3 and summary["failed"] == 0
    rows = _rows(out)
    assert [r["file"] for r in rows] == ["ISIC_0.jpg", "ISIC_1.jpg", "ISIC_2.jpg"]
    for r in rows:
        p = np.array([float(r[k]) for k in ("p_melanoma", "p_nevus", "p_seborrheic_keratosis")])
        assert abs(p.sum() - 1) < 1e-4
        assert r["predicted_label"] == ["melanoma", "nevus", "seborrheic_keratosis"][int(p.argmax())]
        assert (
            float(r["diameter_px"]) > 5
            and abs(float(r["diameter_mm"]) - 0.05 * float(r["diameter_px"])) < 1e-3
        )
        assert (out / "gradcam" / f"{Path(r['file']).stem}_gradcam.png").is_file()
    assert {p: p.read_bytes() for p in before} == before  # inputs untouched


def test_classify_segments_when_no_masks_and_records_bad_files(folder, models, tmp_path):
    src, _ = folder
    seg, clf = models
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    code = main(
        [
            "classify",
            str(src),
            "-o",
            str(out),
            "--classifier",
            str(clf),
            "--segmenter",
            str(seg),
            "--no-measure",
        ]
    )
    assert code == 3
    rows = {r["file"]: r for r in _rows(out)}
    assert rows["broken.jpg"]["status"] == "error" and "broken.jpg" in rows["broken.jpg"]["error"]
    assert rows["empty.png"]["error_type"] == "EmptyFileError"
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 3 and all(r["mask_source"] == "predicted" for r in ok)
    assert all((out / "masks" / f"{Path(r['file']).stem}_mask.png").is_file() for r in ok)
    assert "diameter_px" not in next(iter(rows.values()))


def test_classify_resumes_without_redoing_finished_images(folder, models, tmp_path):
    src, masks = folder
    _, clf = models
    out = tmp_path / "out"
    assert main(["classify", str(src), "-o", str(out), "--classifier", str(clf), "--masks", str(masks)]) == 0
    first = (out / "classification.csv").read_bytes()
    lines = (out / "journal.jsonl").read_text().splitlines()
    # simulate a kill after the first image: the journal keeps one finished line and a cut line
    (out / "journal.jsonl").write_text(lines[0] + "\n" + lines[1][:10])
    (out / "classification.csv").unlink()
    assert main(["classify", str(src), "-o", str(out), "--classifier", str(clf), "--masks", str(masks)]) == 0
    assert (out / "classification.csv").read_bytes() == first
    finished = [json.loads(x)["file"] for x in (out / "journal.jsonl").read_text().splitlines()]
    assert finished.count("ISIC_0.jpg") == 1  # not redone
    assert sorted(finished) == ["ISIC_0.jpg", "ISIC_1.jpg", "ISIC_2.jpg"]


def test_classify_refuses_a_rerun_with_other_settings(folder, models, tmp_path, capsys):
    """Issue 16 (4): a rerun with --tta and predicted masks into a --masks --no-measure run mixed settings."""
    src, masks = folder
    seg, clf = models
    out = tmp_path / "out"
    assert main(["classify", str(src), "-o", str(out), "--classifier", str(clf), "--masks", str(masks),
                 "--no-measure"]) == 0
    first = (out / "classification.csv").read_bytes()
    capsys.readouterr()
    assert main(["classify", str(src), "-o", str(out), "--classifier", str(clf), "--segmenter", str(seg),
                 "--tta"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "classifier_tta: False -> True" in err and "--overwrite" in err
    assert (out / "classification.csv").read_bytes() == first
    assert main(["classify", str(src), "-o", str(out), "--classifier", str(clf), "--segmenter", str(seg),
                 "--tta", "--overwrite"]) == 0
    assert all(r["mask_source"] == "predicted" for r in _rows(out))


def test_classify_refuses_two_files_with_one_stem(folder, models, tmp_path, capsys):
    """Issue 16 (3): a.jpg and a.png both wrote masks/a_mask.png (two rows, one mask)."""
    src, _ = folder
    seg, clf = models
    write_image(src / "ISIC_0.png", synthetic_lesion((60, 80), rng=9)[0])
    assert main(["classify", str(src), "-o", str(tmp_path / "out"), "--classifier", str(clf), "--segmenter",
                 str(seg)]) == 2
    err = capsys.readouterr().err
    assert "ISIC_0.jpg" in err and "ISIC_0.png" in err and "same stem" in err
    assert not (tmp_path / "out" / "masks").exists()


def test_classify_on_an_empty_folder_exits_2(models, tmp_path, capsys):
    """Issue 16 (12): classify on an empty folder exited 0; segment exits 2."""
    _, clf = models
    (tmp_path / "empty").mkdir()
    assert main(["classify", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--classifier", str(clf),
                 "--masks", str(tmp_path / "empty")]) == 2
    assert "No images found" in capsys.readouterr().err


def test_classify_into_an_existing_file_is_a_clear_error(folder, models, tmp_path, capsys):
    """Issue 16 (12): -o EXISTING_FILE printed a bare [Errno 17]."""
    src, masks = folder
    _, clf = models
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["classify", str(src), "-o", str(target), "--classifier", str(clf), "--masks", str(masks)]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "[Errno" not in err


def test_classify_refuses_output_inside_input_and_missing_masks(folder, models, tmp_path):
    src, masks = folder
    _, clf = models
    assert (
        main(["classify", str(src), "-o", str(src / "out"), "--classifier", str(clf), "--masks", str(masks)])
        == 2
    )
    (masks / "ISIC_2_segmentation.png").unlink()
    out = tmp_path / "o2"
    assert main(["classify", str(src), "-o", str(out), "--classifier", str(clf), "--masks", str(masks)]) == 3
    row = {r["file"]: r for r in _rows(out)}["ISIC_2.jpg"]
    assert row["status"] == "error" and "No mask" in row["error"]


@pytest.mark.slow
def test_the_default_classify_path_imports_no_torch(tmp_path):
    """With the classifier's export in the cache (made by the first run), skinseg classify runs without torch."""
    import os
    import subprocess
    import sys

    from skinseg.classify import ClassifierPredictor
    from skinseg.inference import DeferredOnnxBackend

    cache = tmp_path / "cache"
    for member in ClassifierPredictor.load("default", cache_dir=cache).members:  # what the first run does
        if isinstance(member, DeferredOnnxBackend):
            member.backend()
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.jpg", synthetic_lesion((60, 80), rng=5)[0])
    code = ("import sys\nfrom skinseg.cli import main\n"
            f"rc = main(['classify', {str(src)!r}, '-o', {str(tmp_path / 'out')!r}, '--quiet'])\n"
            "print(rc, 'torch' in sys.modules)")
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(repo), "SKINSEG_CACHE_DIR": str(cache)})
    assert out.stdout.strip().splitlines()[-1] == "0 False"
    row = _rows(tmp_path / "out")[0]
    assert row["status"] == "ok" and row["mask_source"] == "predicted"
