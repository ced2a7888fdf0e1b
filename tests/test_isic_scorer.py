"""skinseg.metrics.evaluate_folders against the official ISIC scorer (isic-challenge-scoring <= 5.6.0).

Both read the same folders; every metric they share must agree to 1e-6, per image and
macro-averaged. Skips when the scorer is not installed (``pip install "isic-challenge-scoring<=5.6.0"``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from skinseg.metrics import evaluate_folders

pytestmark = [
    pytest.mark.isic_scorer,
    # the scorer's own `Series.rename(..., inplace=True)` under pandas >= 3.1; not our code
    pytest.mark.filterwarnings("ignore:The inplace keyword in Series.rename is deprecated"),
]

isic_segmentation = pytest.importorskip("isic_challenge_scoring.segmentation")
isic_load_image = pytest.importorskip("isic_challenge_scoring.load_image")

# skinseg key -> ISIC scorer key
SHARED = {
    "dice": "dice",
    "iou": "jaccard",
    "thresholded_jaccard": "threshold_jaccard",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "accuracy": "accuracy",
}
TOL = 1e-6


def _official(pred_dir: Path, truth_dir: Path) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per-image and macro-averaged metrics computed by the official scorer's own code paths."""
    per_image = {}
    for pair in isic_load_image.iter_image_pairs(truth_dir, pred_dir):
        per_image[pair.image_id] = isic_segmentation.SegmentationScore([pair]).macro_average.to_dict()
    macro = isic_segmentation.SegmentationScore.from_dir(truth_dir, pred_dir).macro_average.to_dict()
    return per_image, macro


def _assert_agree(pred_dir: Path, truth_dir: Path) -> float:
    official_rows, official_macro = _official(pred_dir, truth_dir)
    ours = evaluate_folders(pred_dir, truth_dir, progress=False)
    assert ours.unmatched_predictions == [] and ours.unmatched_truths == []
    assert sorted(r["id"] for r in ours.rows) == sorted(official_rows)
    worst = 0.0
    for row in ours.rows:
        ref = official_rows[row["id"]]
        for ours_key, isic_key in SHARED.items():
            diff = abs(row[ours_key] - float(ref[isic_key]))
            assert diff <= TOL, (row["id"], ours_key, row[ours_key], ref[isic_key])
            worst = max(worst, diff)
    for ours_key, isic_key in SHARED.items():
        diff = abs(ours.summary["macro"][ours_key]["mean"] - float(official_macro[isic_key]))
        assert diff <= TOL, (ours_key, ours.summary["macro"][ours_key]["mean"], official_macro[isic_key])
        worst = max(worst, diff)
    return worst


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    pred_dir, truth_dir = tmp_path / "pred", tmp_path / "truth"
    pred_dir.mkdir()
    truth_dir.mkdir()
    return pred_dir, truth_dir


def test_edge_cases_match_official_scorer(tmp_path: Path) -> None:
    """Empty truth/prediction, full truth, grey levels 128/129, a 1-bit PNG and J = 0.65 exactly."""
    pred_dir, truth_dir = _dirs(tmp_path)
    h, w = 20, 30
    empty = np.zeros((h, w), np.uint8)
    full = np.full((h, w), 255, np.uint8)
    box = empty.copy()
    box[5:15, 5:25] = 255
    grey_truth = box.copy()
    grey_truth[5:8] = 128  # background for the scorer (> 128 is lesion)
    grey_truth[15:17, 5:25] = 129  # lesion for the scorer
    soft = (np.linspace(0, 255, w)[None, :] * np.ones((h, 1))).astype(np.uint8)
    j065 = empty.copy()
    j065[0, :20] = 255
    j065_pred = empty.copy()
    j065_pred[0, :13] = 255  # J = 13 / 20
    cases = [
        (empty, empty),  # both empty: 1.0
        (empty, box),  # empty truth + false positives: 0.0 (sensitivity 1.0)
        (box, empty),  # empty prediction
        (full, box),  # full truth: specificity undefined
        (grey_truth, soft),  # grey levels in both
        (box, np.roll(box, 3, axis=1)),
        (j065, j065_pred),
        (box, box),
    ]
    for k, (truth, pred) in enumerate(cases):
        cv2.imwrite(str(truth_dir / f"ISIC_{k:07d}_segmentation.png"), truth)
        cv2.imwrite(str(pred_dir / f"ISIC_{k:07d}_segmentation.png"), pred)
    k = len(cases)
    cv2.imwrite(str(truth_dir / f"ISIC_{k:07d}_segmentation.png"), box)
    Image.fromarray(np.roll(box, 2, axis=0) > 0).convert("1").save(
        pred_dir / f"ISIC_{k:07d}.png"
    )  # 1-bit PNG
    assert _assert_agree(pred_dir, truth_dir) <= TOL


def _prediction(truth: np.ndarray, i: int) -> np.ndarray:
    """A deterministic, imperfect prediction (uint8 greyscale) made from a {0, 255} truth mask."""
    rng = np.random.default_rng(1000 + i)
    disk = lambda r: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))  # noqa: E731
    kind = i % 10
    if kind == 0:
        return truth.copy()
    if kind == 1:
        return cv2.erode(truth, disk(4))
    if kind == 2:
        return cv2.dilate(truth, disk(9))
    if kind == 3:
        m = np.zeros_like(truth)
        m[7:, : -11 or None] = truth[:-7, 11:]
        return m
    if kind == 4:  # random blobs, mostly J < 0.65
        m = np.zeros_like(truth)
        for _ in range(3):
            c = (int(rng.integers(0, truth.shape[1])), int(rng.integers(0, truth.shape[0])))
            axes = (int(rng.integers(5, 40)), int(rng.integers(5, 40)))
            cv2.ellipse(m, c, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        return m
    if kind == 5:
        return np.zeros_like(truth)
    if kind == 6:  # soft greyscale map: exercises the > 128 binarisation
        return cv2.GaussianBlur(truth, (0, 0), 6)
    if kind == 7:
        return cv2.erode(truth, disk(25))
    if kind == 8:  # hole + false-positive speck
        m = truth.copy()
        ys, xs = np.nonzero(m)
        cy, cx = int(ys.mean()), int(xs.mean())
        cv2.circle(m, (cx, cy), 8, 0, -1)
        cv2.circle(m, (5, 5), 4, 255, -1)
        return m
    flip = rng.random(truth.shape) < 0.05  # salt and pepper
    return np.where(flip, 255 - truth, truth).astype(np.uint8)


@pytest.mark.realdata
def test_real_masks_match_official_scorer(lesions_dir: Path, tmp_path: Path) -> None:
    with open(lesions_dir / "manifest.csv", newline="") as f:
        ids = sorted(row["id"] for row in csv.DictReader(f))[:40]
    assert len(ids) == 40
    pred_dir, truth_dir = _dirs(tmp_path)
    for i, image_id in enumerate(ids):
        truth = cv2.imread(str(lesions_dir / "masks" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert truth is not None and truth.ndim == 2 and set(np.unique(truth)) <= {0, 255}
        cv2.imwrite(str(truth_dir / f"{image_id}_segmentation.png"), truth)
        cv2.imwrite(str(pred_dir / f"{image_id}_segmentation.png"), _prediction(truth, i))
    assert _assert_agree(pred_dir, truth_dir) <= TOL
    rows = evaluate_folders(pred_dir, truth_dir, progress=False).rows
    jaccards = np.array([r["iou"] for r in rows])
    # the set exercises every branch of the metric: perfect, passing, failing J, empty predictions
    assert (jaccards == 1.0).any() and ((jaccards >= 0.65) & (jaccards < 1)).any()
    assert ((jaccards > 0) & (jaccards < 0.65)).any() and sum(r["tp"] + r["fp"] == 0 for r in rows) >= 4


def test_jpeg_and_anti_aliased_truths_match_official_scorer(tmp_path: Path) -> None:
    """Grey-level truths (JPEG, anti-aliased PNG) are binarised at > 128 exactly as the scorer does."""
    pred_dir, truth_dir = _dirs(tmp_path)
    yy, xx = np.mgrid[0:96, 0:128]
    for k in range(4):
        disk = ((yy - 48) ** 2 + (xx - 60 - 4 * k) ** 2 < (30 + 3 * k) ** 2).astype(np.uint8) * 255
        soft = cv2.GaussianBlur(disk, (0, 0), 1.5)  # anti-aliased edge: grey levels on the boundary
        Image.fromarray(soft).save(truth_dir / f"ISIC_{k:07d}_segmentation.jpg", quality=70)
        Image.fromarray(soft).save(truth_dir / f"ISIC_{k + 10:07d}_segmentation.png")
        for j in (k, k + 10):
            cv2.imwrite(str(pred_dir / f"ISIC_{j:07d}.png"), np.roll(disk, 3 * k, axis=1))
    assert _assert_agree(pred_dir, truth_dir) <= TOL
    levels = {r["truth_levels"] for r in evaluate_folders(pred_dir, truth_dir, progress=False).rows}
    assert levels == {"grey>128"}


def test_zero_one_masks_are_the_one_documented_deviation(tmp_path: Path) -> None:
    """The scorer (pixel > 128) reads {0, 1} files as empty and scores a misplaced blob 1.0; skinseg
    reads 1 as lesion, scores it 0.0 and flags both files."""
    pred_dir, truth_dir = _dirs(tmp_path)
    truth = np.zeros((60, 80), np.uint8)
    truth[20:50, 20:60] = 1
    pred = np.zeros_like(truth)
    pred[:10, :10] = 1
    cv2.imwrite(str(truth_dir / "ISIC_0000001_segmentation.png"), truth)
    cv2.imwrite(str(pred_dir / "ISIC_0000001.png"), pred)
    _, official = _official(pred_dir, truth_dir)
    assert float(official["dice"]) == 1.0  # both read as empty by the scorer
    ours = evaluate_folders(pred_dir, truth_dir, progress=False)
    assert ours.rows[0]["dice"] == 0.0
    assert ours.summary["n_zero_one_predictions"] == 1 and ours.summary["n_zero_one_truths"] == 1
