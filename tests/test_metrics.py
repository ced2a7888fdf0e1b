"""Tests of skinseg.metrics (per-image scores, aggregation, folder evaluation) and skinseg.report."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist, directed_hausdorff
from skimage.segmentation import find_boundaries
from sklearn import metrics as skm

from skinseg import metrics
from skinseg.errors import (
    ConfigError,
    InvalidMaskError,
    MaskShapeError,
    MaskValueError,
    MissingPredictionError,
    NotAnImageError,
)
from skinseg.metrics import (
    EvaluationResult,
    SegmentationMeter,
    accuracy_score,
    confusion_counts,
    dice_score,
    evaluate_folders,
    hd95,
    iou_score,
    segmentation_metrics,
    sensitivity_score,
    specificity_score,
    summarize,
    thresholded_jaccard,
)
from skinseg.report import format_summary_table, write_evaluation_report

# 4x4 known answer: tp = 2, fp = 2, fn = 2, tn = 10
PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
TRUE = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
EMPTY = np.zeros((4, 4), dtype=bool)


def _random_blob(rng: np.random.Generator, shape: tuple[int, int], level: float) -> np.ndarray:
    return gaussian_filter(rng.standard_normal(shape), 1.5) > level


# --------------------------------------------------------------------------- known answers


def test_known_answers_4x4() -> None:
    assert confusion_counts(PRED, TRUE) == (2, 2, 2, 10)
    assert dice_score(PRED, TRUE) == 0.5
    assert iou_score(PRED, TRUE) == pytest.approx(1 / 3)
    assert thresholded_jaccard(PRED, TRUE) == 0.0
    assert sensitivity_score(PRED, TRUE) == 0.5
    assert specificity_score(PRED, TRUE) == pytest.approx(10 / 12)
    assert accuracy_score(PRED, TRUE) == 0.75
    assert hd95(PRED, TRUE) == 1.0


def test_known_answers_accept_uint8_01_and_0255() -> None:
    assert dice_score(PRED.astype(np.uint8), (TRUE * 255).astype(np.uint8)) == 0.5


def test_thresholded_jaccard_keeps_values_at_or_above_threshold() -> None:
    target = np.zeros((1, 20), dtype=bool)
    target[0, :20] = True
    pred = np.zeros_like(target)
    pred[0, :13] = True  # J = 13 / 20 = 0.65 exactly
    assert thresholded_jaccard(pred, target) == pytest.approx(0.65)
    pred[0, 12] = False  # J = 0.6
    assert thresholded_jaccard(pred, target) == 0.0
    assert thresholded_jaccard(pred, target, threshold=0.5) == pytest.approx(0.6)


def test_segmentation_metrics_keys_and_values() -> None:
    row = segmentation_metrics(PRED, TRUE)
    assert set(row) == {*metrics.METRIC_NAMES, "tp", "fp", "fn", "tn"}
    assert row["dice"] == dice_score(PRED, TRUE)
    assert row["hd95"] == hd95(PRED, TRUE)
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 2, 2, 10)
    assert all(isinstance(row[k], float) for k in metrics.METRIC_NAMES)


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("seed", range(10), ids=lambda s: f"seed{s}")
def test_identities(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = _random_blob(rng, (24, 31), 0.2)
    other = _random_blob(rng, (24, 31), 0.2)
    assert dice_score(m, m) == 1.0
    assert iou_score(m, m) == 1.0
    assert hd95(m, m) == 0.0
    d, j = dice_score(m, other), iou_score(m, other)
    assert d == pytest.approx(2 * j / (1 + j), abs=1e-12)
    assert dice_score(m, other) == dice_score(other, m)
    assert hd95(m, other) == hd95(other, m)


# --------------------------------------------------------------------------- scikit-learn reference


@pytest.mark.parametrize(
    ("seed", "shape", "density"),
    [
        (s, shape, d)
        for s, (shape, d) in enumerate([((16, 16), 0.3), ((7, 13), 0.5), ((32, 20), 0.1), ((5, 5), 0.8)] * 5)
    ],
    ids=lambda v: str(v),
)
def test_agrees_with_scikit_learn(seed: int, shape: tuple[int, int], density: float) -> None:
    rng = np.random.default_rng(seed)
    pred = rng.random(shape) < density
    target = rng.random(shape) < density
    t, p = target.ravel(), pred.ravel()
    assert dice_score(pred, target) == pytest.approx(skm.f1_score(t, p, zero_division=1.0), abs=1e-12)
    assert iou_score(pred, target) == pytest.approx(skm.jaccard_score(t, p, zero_division=1.0), abs=1e-12)
    assert sensitivity_score(pred, target) == pytest.approx(
        skm.recall_score(t, p, zero_division=1.0), abs=1e-12
    )
    assert specificity_score(pred, target) == pytest.approx(
        skm.recall_score(t, p, pos_label=False, zero_division=1.0), abs=1e-12
    )
    assert accuracy_score(pred, target) == pytest.approx(skm.accuracy_score(t, p), abs=1e-12)
    tn, fp, fn, tp = skm.confusion_matrix(t, p, labels=[False, True]).ravel()
    assert confusion_counts(pred, target) == (tp, fp, fn, tn)


# --------------------------------------------------------------------------- HD95 reference


def _reference_hd95(a: np.ndarray, b: np.ndarray) -> float:
    """Brute force: skimage inner boundaries (outside the image = background) + all-pairs distances."""

    def boundary_points(m: np.ndarray) -> np.ndarray:
        padded = find_boundaries(np.pad(m, 1).astype(np.uint8), connectivity=1, mode="inner")
        return np.argwhere(padded[1:-1, 1:-1])

    pa, pb = boundary_points(a), boundary_points(b)
    d = cdist(pa, pb)
    return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))


@pytest.mark.parametrize("seed", range(12), ids=lambda s: f"seed{s}")
def test_hd95_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    shape = (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
    a = _random_blob(rng, shape, 0.0)
    b = _random_blob(rng, shape, 0.1)
    if not a.any() or not b.any():
        pytest.skip("degenerate random draw")
    assert hd95(a, b) == pytest.approx(_reference_hd95(a, b), abs=1e-9)
    ba, bb = (
        np.argwhere(find_boundaries(np.pad(a, 1), mode="inner")),
        np.argwhere(find_boundaries(np.pad(b, 1), mode="inner")),
    )
    assert hd95(a, b) <= max(directed_hausdorff(ba, bb)[0], directed_hausdorff(bb, ba)[0]) + 1e-9


def test_hd95_full_image_mask_uses_the_image_edge_as_boundary() -> None:
    full = np.ones((6, 6), dtype=bool)
    inner = np.zeros((6, 6), dtype=bool)
    inner[1:5, 1:5] = True
    assert hd95(full, inner) == pytest.approx(_reference_hd95(full, inner))
    assert hd95(full, inner) == pytest.approx(math.sqrt(2))  # frame corners are diagonal to the inner ring


def test_hd95_shift() -> None:
    a = np.zeros((20, 20), dtype=bool)
    a[5:12, 5:12] = True
    assert hd95(a, np.roll(a, 3, axis=0)) == 3.0


# --------------------------------------------------------------------------- empty masks


def test_both_empty_scores_empty_score() -> None:
    assert dice_score(EMPTY, EMPTY) == 1.0
    assert iou_score(EMPTY, EMPTY) == 1.0
    assert thresholded_jaccard(EMPTY, EMPTY) == 1.0
    assert sensitivity_score(EMPTY, EMPTY) == 1.0
    assert specificity_score(EMPTY, EMPTY) == 1.0
    assert accuracy_score(EMPTY, EMPTY) == 1.0
    assert hd95(EMPTY, EMPTY) == 0.0
    assert dice_score(EMPTY, EMPTY, empty_score=0.0) == 0.0
    assert iou_score(EMPTY, EMPTY, empty_score=0.5) == 0.5


def test_empty_truth_with_false_positive() -> None:
    assert dice_score(PRED, EMPTY) == 0.0
    assert iou_score(PRED, EMPTY) == 0.0
    assert thresholded_jaccard(PRED, EMPTY) == 0.0
    assert sensitivity_score(PRED, EMPTY) == 1.0  # ISIC: undefined sensitivity is a freebie
    assert specificity_score(PRED, EMPTY) == 12 / 16
    assert hd95(PRED, EMPTY) == math.hypot(4, 4)


def test_empty_prediction() -> None:
    assert dice_score(EMPTY, TRUE) == 0.0
    assert iou_score(EMPTY, TRUE) == 0.0
    assert sensitivity_score(EMPTY, TRUE) == 0.0
    assert specificity_score(EMPTY, TRUE) == 1.0
    assert hd95(EMPTY, TRUE) == math.hypot(4, 4)


def test_full_truth_specificity_is_empty_score() -> None:
    full = np.ones((4, 4), dtype=bool)
    assert specificity_score(PRED, full) == 1.0
    assert specificity_score(PRED, full, empty_score=0.0) == 0.0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "fn",
    [
        confusion_counts,
        dice_score,
        iou_score,
        thresholded_jaccard,
        sensitivity_score,
        specificity_score,
        accuracy_score,
        hd95,
        segmentation_metrics,
    ],
    ids=lambda f: f.__name__,
)
def test_bad_input(fn) -> None:
    with pytest.raises(MaskShapeError, match=r"\(4, 4\) and \(4, 5\)"):
        fn(PRED, np.zeros((4, 5), dtype=bool))
    with pytest.raises(MaskValueError, match="`pred`"):
        fn(PRED.astype(np.uint8) * 2, TRUE)
    with pytest.raises(MaskValueError, match="`target`"):
        fn(PRED, TRUE.astype(np.float32))
    with pytest.raises(InvalidMaskError, match="2-D"):
        fn(PRED[..., None], TRUE)
    with pytest.raises(TypeError):
        fn(PRED.tolist(), TRUE)


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="empty_score"):
        dice_score(PRED, TRUE, empty_score=2.0)
    with pytest.raises(ConfigError, match="threshold"):
        thresholded_jaccard(PRED, TRUE, threshold=1.5)
    with pytest.raises(InvalidMaskError, match="at least one pixel"):
        dice_score(np.zeros((0, 0), bool), np.zeros((0, 0), bool))


def test_inputs_never_mutated() -> None:
    pred, target = PRED.astype(np.uint8) * 255, TRUE.copy()
    before = pred.copy(), target.copy()
    for fn in (
        confusion_counts,
        dice_score,
        iou_score,
        thresholded_jaccard,
        sensitivity_score,
        specificity_score,
        accuracy_score,
        hd95,
        segmentation_metrics,
    ):
        fn(pred, target)
    meter = SegmentationMeter()
    meter.update(pred, target)
    np.testing.assert_array_equal(pred, before[0])
    np.testing.assert_array_equal(target, before[1])
    rows = meter.rows
    snapshot = json.dumps(rows)
    summarize(rows, n_boot=10)
    assert json.dumps(rows) == snapshot


# --------------------------------------------------------------------------- aggregation


def _rows(n: int = 30, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        shape = (int(rng.integers(10, 60)), int(rng.integers(10, 60)))
        t = _random_blob(rng, shape, 0.3)
        p = _random_blob(rng, shape, 0.3) | t if i % 3 else _random_blob(rng, shape, 0.5)
        rows.append({"id": f"img{i}", **segmentation_metrics(p, t)})
    return rows


def test_summarize_macro_mean_and_bootstrap_ci() -> None:
    rows = _rows()
    s = summarize(rows)
    assert s["aggregation"] == "macro mean over 30 images (ISIC)"
    assert s["n_images"] == 30 and s["n_boot"] == 2000 and s["ci"] == 0.95
    for name in metrics.METRIC_NAMES:
        m = s["macro"][name]
        assert m["mean"] == pytest.approx(np.mean([r[name] for r in rows]), abs=1e-12)
        assert m["ci_low"] <= m["mean"] <= m["ci_high"]
    assert s["macro"]["dice"]["ci_low"] < s["macro"]["dice"]["ci_high"]
    assert summarize(rows) == s  # rng=0 by default: deterministic
    assert summarize(rows, rng=np.random.default_rng(0)) == s
    assert summarize(rows, rng=1)["macro"]["dice"]["ci_low"] != s["macro"]["dice"]["ci_low"]
    narrow = summarize(rows, ci=0.5)["macro"]["dice"]
    assert (
        s["macro"]["dice"]["ci_low"] <= narrow["ci_low"] <= narrow["ci_high"] <= s["macro"]["dice"]["ci_high"]
    )
    no_ci = summarize(rows, n_boot=0)["macro"]["dice"]
    assert no_ci["ci_low"] is None and no_ci["mean"] == s["macro"]["dice"]["mean"]


def test_pooled_differs_from_macro_and_is_labelled() -> None:
    big_t = np.zeros((100, 100), dtype=bool)
    big_t[10:90, 10:90] = True
    small_t = np.zeros((10, 10), dtype=bool)
    small_t[2:4, 2:4] = True
    small_p = np.zeros((10, 10), dtype=bool)
    small_p[6:8, 6:8] = True
    rows = [segmentation_metrics(big_t, big_t), segmentation_metrics(small_p, small_t)]
    s = summarize(rows, n_boot=0)
    assert s["macro"]["dice"]["mean"] == 0.5
    assert s["pooled"]["aggregation"] == "pooled over all pixels"
    assert s["pooled"]["dice"] == pytest.approx(2 * 6400 / (2 * 6400 + 4 + 4))
    assert s["pooled"]["tp"] == 6400 and s["pooled"]["fp"] == 4 and s["pooled"]["fn"] == 4
    assert "thresholded_jaccard" not in s["pooled"] and "hd95" not in s["pooled"]
    table = format_summary_table(s)
    assert "macro mean over 2 images (ISIC)" in table and "pooled over all pixels" in table


def test_summarize_counts_empty_cases() -> None:
    full = np.ones((4, 4), dtype=bool)
    rows = [
        segmentation_metrics(a, b)
        for a, b in [(EMPTY, EMPTY), (PRED, EMPTY), (EMPTY, TRUE), (PRED, TRUE), (full, TRUE)]
    ]
    s = summarize(rows, n_boot=0)
    assert (s["n_empty_truth"], s["n_empty_pred"], s["n_both_empty"], s["n_one_empty"]) == (2, 2, 1, 2)


def test_summarize_bad_input() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        summarize([])
    with pytest.raises(ConfigError, match="lacks"):
        summarize([{"dice": 1.0}])
    with pytest.raises(ConfigError, match="ci"):
        summarize(_rows(3), ci=1.0)
    with pytest.raises(ConfigError, match="n_boot"):
        summarize(_rows(3), n_boot=-1)


def test_segmentation_meter_streams_rows() -> None:
    meter = SegmentationMeter()
    rng = np.random.default_rng(3)
    pairs = [(_random_blob(rng, (20, 20), 0.2), _random_blob(rng, (20, 20), 0.2)) for _ in range(5)]
    for i, (p, t) in enumerate(pairs):
        row = meter.update(p, t, name=None if i else "first")
        assert row["dice"] == dice_score(p, t)
    assert len(meter) == 5
    assert [r["id"] for r in meter.rows] == ["first", "1", "2", "3", "4"]
    meter.rows[0]["dice"] = -1.0  # a copy
    assert meter.rows[0]["dice"] >= 0
    assert meter.summary(n_boot=50) == summarize(meter.rows, n_boot=50)
    meter.reset()
    assert len(meter) == 0


# --------------------------------------------------------------------------- folders


def _write(path, mask) -> None:
    assert cv2.imwrite(str(path), mask.astype(np.uint8) * 255 if mask.dtype == bool else mask)


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(7)
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir()
    pred_dir.mkdir()
    truths = {}
    for k in range(1, 6):
        t = _random_blob(rng, (30, 40), 0.2)
        truths[f"ISIC_000000{k}"] = t
        _write(truth_dir / f"ISIC_000000{k}_segmentation.png", t)
        if k != 5:  # ISIC_0000005 has no prediction
            _write(pred_dir / f"ISIC_000000{k}.png", np.roll(t, k, axis=1))
    _write(pred_dir / "ISIC_0000009_segmentation.png", truths["ISIC_0000001"])  # no truth
    (truth_dir / "ATTRIBUTION.txt").write_text("ignored")
    return pred_dir, truth_dir, truths


def test_evaluate_folders_pairs_by_isic_id(folders) -> None:
    pred_dir, truth_dir, truths = folders
    result = evaluate_folders(pred_dir, truth_dir, missing="skip", progress=False)
    assert isinstance(result, EvaluationResult)
    assert [r["id"] for r in result.rows] == ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003", "ISIC_0000004"]
    assert [p.name for p in result.unmatched_predictions] == ["ISIC_0000009_segmentation.png"]
    assert [p.name for p in result.unmatched_truths] == ["ISIC_0000005_segmentation.png"]
    assert result.summary["n_images"] == 4
    assert result.summary["n_unmatched_predictions"] == 1 and result.summary["n_unmatched_truths"] == 1
    for row in result.rows:
        k = int(row["id"][-1])
        t = truths[row["id"]]
        assert row["dice"] == dice_score(np.roll(t, k, axis=1), t)
        assert row["pred_resized"] is False


def test_evaluate_folders_pairs_by_stem_with_suffixes(tmp_path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    _write(tmp_path / "t" / "lesion_a_segmentation.png", TRUE)
    _write(tmp_path / "p" / "lesion_a_mask.png", PRED)
    result = evaluate_folders(tmp_path / "p", tmp_path / "t", pred_suffix="_mask", progress=False)
    assert [r["id"] for r in result.rows] == ["lesion_a"]
    assert result.rows[0]["dice"] == 0.5
    with pytest.raises(ConfigError, match="matched"):
        evaluate_folders(tmp_path / "p", tmp_path / "t", progress=False)


def test_evaluate_folders_binarises_like_the_isic_scorer(tmp_path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    truth = np.array([[255, 255, 129, 128], [0, 0, 0, 0]], dtype=np.uint8)  # 129 lesion, 128 background
    pred = np.array([[200, 128, 129, 0], [0, 0, 0, 0]], dtype=np.uint8)
    _write(tmp_path / "t" / "ISIC_0000001_segmentation.png", truth)
    _write(tmp_path / "p" / "ISIC_0000001_segmentation.png", pred)
    row = evaluate_folders(tmp_path / "p", tmp_path / "t", progress=False).rows[0]
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (2, 0, 1, 5)


def test_evaluate_folders_size_mismatch_and_resize(tmp_path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    truth = np.zeros((8, 8), dtype=bool)
    truth[:4, :4] = True
    _write(tmp_path / "t" / "ISIC_0000001_segmentation.png", truth)
    _write(tmp_path / "p" / "ISIC_0000001_segmentation.png", truth[::2, ::2])
    with pytest.raises(MaskShapeError, match=r"ISIC_0000001_segmentation\.png.*\(4, 4\).*\(8, 8\)"):
        evaluate_folders(tmp_path / "p", tmp_path / "t", progress=False)
    result = evaluate_folders(tmp_path / "p", tmp_path / "t", resize_predictions=True, progress=False)
    assert result.rows[0]["pred_resized"] is True and result.rows[0]["dice"] == 1.0
    assert result.summary["n_resized"] == 1


def test_evaluate_folders_bad_files(tmp_path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    _write(tmp_path / "t" / "ISIC_0000001_segmentation.png", TRUE)
    (tmp_path / "p" / "ISIC_0000001.png").write_bytes(b"not a png")
    with pytest.raises(NotAnImageError, match=r"Cannot read '.*ISIC_0000001\.png' as an image"):
        evaluate_folders(tmp_path / "p", tmp_path / "t", progress=False)
    _write(tmp_path / "p" / "ISIC_0000001.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InvalidMaskError, match="single-channel"):
        evaluate_folders(tmp_path / "p", tmp_path / "t", progress=False)
    _write(tmp_path / "p" / "ISIC_0000001_v2.png", TRUE)
    with pytest.raises(ConfigError, match="two masks for 'ISIC_0000001'"):
        evaluate_folders(tmp_path / "p", tmp_path / "t", progress=False)
    with pytest.raises(ConfigError, match="existing folder"):
        evaluate_folders(tmp_path / "missing", tmp_path / "t", progress=False)


def test_evaluate_folders_progress_goes_to_stderr(folders, capsys) -> None:
    pred_dir, truth_dir, _ = folders
    evaluate_folders(pred_dir, truth_dir, missing="skip", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""


# --------------------------------------------------------------------------- report


def test_write_evaluation_report(folders, tmp_path) -> None:
    pred_dir, truth_dir, _ = folders
    result = evaluate_folders(pred_dir, truth_dir, missing="skip", progress=False)
    paths = write_evaluation_report(result, tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == [
        "evaluation.png",
        "per_image.csv",
        "summary.json",
    ]
    summary = json.loads(paths["summary"].read_text())
    assert summary["aggregation"] == "macro mean over 4 images (ISIC)"
    assert summary["unmatched_truths"][0].endswith("ISIC_0000005_segmentation.png")
    lines = paths["per_image"].read_text().splitlines()
    assert lines[0].startswith("id,dice,iou,thresholded_jaccard") and len(lines) == 5
    assert float(lines[1].split(",")[1]) == result.rows[0]["dice"]
    png = cv2.imread(str(paths["figure"]))
    assert png is not None and png.shape[0] > 100
    # without paths: bar chart of the worst cases
    bare = EvaluationResult(
        [{k: v for k, v in r.items() if not k.endswith("_path")} for r in result.rows], result.summary
    )
    write_evaluation_report(bare, tmp_path / "report")
    assert cv2.imread(str(paths["figure"])) is not None


def test_format_summary_table_names_aggregation() -> None:
    table = format_summary_table(summarize(_rows(12)))
    assert "macro mean over 12 images (ISIC)" in table
    assert "95 % CI" in table and "pooled over all pixels" in table
    assert "Thresholded Jaccard" in table and "HD95" in table


# --------------------------------------------------------------------------- mask values, missing files, EXIF


def _two_dirs(tmp_path):
    pred_dir, truth_dir = tmp_path / "p", tmp_path / "t"
    pred_dir.mkdir()
    truth_dir.mkdir()
    return pred_dir, truth_dir


def _box(shape=(60, 80), rows=slice(20, 50), cols=slice(20, 60)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


def test_evaluate_folders_reads_zero_one_masks_as_lesion_and_flags_them(tmp_path) -> None:
    """{0, 1} files are lesion = 1, never empty (the ISIC scorer's > 128 would read them as empty)."""
    pred_dir, truth_dir = _two_dirs(tmp_path)
    truth = _box()
    far_blob = _box(rows=slice(0, 10), cols=slice(0, 10))
    assert cv2.imwrite(str(truth_dir / "ISIC_0000001.png"), truth.astype(np.uint8))  # {0, 1}
    assert cv2.imwrite(str(pred_dir / "ISIC_0000001.png"), far_blob.astype(np.uint8))  # {0, 1}, wrong place
    assert cv2.imwrite(str(truth_dir / "ISIC_0000002.png"), truth.astype(np.uint8))  # {0, 1}
    assert cv2.imwrite(str(pred_dir / "ISIC_0000002.png"), truth.astype(np.uint8) * 255)  # good {0, 255}
    result = evaluate_folders(pred_dir, truth_dir, progress=False)
    bad, good = result.rows
    assert bad["dice"] == 0.0 and bad["tp"] == 0 and bad["fp"] == 100 and bad["fn"] == truth.sum()
    assert good["dice"] == 1.0 and good["tp"] == truth.sum()
    assert (bad["pred_levels"], bad["truth_levels"], good["pred_levels"]) == ("0/1", "0/1", "0/255")
    assert result.summary["n_zero_one_predictions"] == 1 and result.summary["n_zero_one_truths"] == 2
    assert result.summary["n_empty_truth"] == 0
    assert any("{0, 1}" in note and "empty" in note for note in result.summary["notes"])


@pytest.mark.parametrize("values", [(0, 100), (0, 1, 2), (0, 128)], ids=["0-100", "0-1-2", "0-128"])
def test_evaluate_folders_refuses_ambiguous_low_values(tmp_path, values) -> None:
    """Non-zero pixels but none above 128 and not {0, 1}: an error naming the file, never 'empty'."""
    pred_dir, truth_dir = _two_dirs(tmp_path)
    _write(truth_dir / "ISIC_0000001.png", _box())
    pred = np.zeros((60, 80), np.uint8)
    for k, v in enumerate(values):
        pred[20 + 10 * k : 30 + 10 * k, 20:60] = v
    _write(pred_dir / "ISIC_0000001.png", pred)
    with pytest.raises(MaskValueError, match=r"ISIC_0000001\.png.*none above 128") as info:
        evaluate_folders(pred_dir, truth_dir, progress=False)
    assert "{0, 255}" in str(info.value)


def test_evaluate_folders_missing_predictions_are_an_error_by_default(folders) -> None:
    pred_dir, truth_dir, _ = folders
    with pytest.raises(MissingPredictionError, match=r"1 of 5 truth masks.*ISIC_0000005") as info:
        evaluate_folders(pred_dir, truth_dir, progress=False)
    assert [p.name for p in info.value.paths] == ["ISIC_0000005_segmentation.png"]
    assert 'missing="skip"' in str(info.value) and 'missing="empty"' in str(info.value)


def test_evaluate_folders_missing_skip_and_empty(folders) -> None:
    pred_dir, truth_dir, truths = folders
    skipped = evaluate_folders(pred_dir, truth_dir, missing="skip", progress=False)
    assert skipped.summary["n_images"] == 4 and skipped.summary["n_missing_predictions"] == 1
    assert skipped.summary["missing"] == "skip"
    assert any("not scored" in note for note in skipped.summary["notes"])
    empty = evaluate_folders(pred_dir, truth_dir, missing="empty", progress=False)
    assert empty.summary["n_images"] == 5 and empty.summary["missing"] == "empty"
    row = empty.rows[-1]
    assert row["id"] == "ISIC_0000005" and row["pred_missing"] is True and row["pred_path"] is None
    assert row["dice"] == 0.0 and row["fn"] == truths["ISIC_0000005"].sum() and row["tp"] + row["fp"] == 0
    mean4 = skipped.summary["macro"]["dice"]["mean"]
    assert empty.summary["macro"]["dice"]["mean"] == pytest.approx(mean4 * 4 / 5)
    assert any("empty prediction" in note for note in empty.summary["notes"])
    with pytest.raises(ConfigError, match="missing"):
        evaluate_folders(pred_dir, truth_dir, missing="zero", progress=False)  # type: ignore[arg-type]


def test_evaluate_folders_ids_restrict_the_truths(folders) -> None:
    pred_dir, truth_dir, _ = folders
    result = evaluate_folders(pred_dir, truth_dir, ids=["ISIC_0000002", "ISIC_0000003"], progress=False)
    assert [r["id"] for r in result.rows] == ["ISIC_0000002", "ISIC_0000003"]
    assert result.unmatched_truths == [] and result.summary["n_outside_ids"] == 3
    with pytest.raises(MissingPredictionError, match="ISIC_0000005"):
        evaluate_folders(pred_dir, truth_dir, ids=["ISIC_0000002", "ISIC_0000005"], progress=False)
    with pytest.raises(ConfigError, match=r"no truth mask.*ISIC_0000077"):
        evaluate_folders(pred_dir, truth_dir, ids=["ISIC_0000002", "ISIC_0000077"], progress=False)


def test_evaluate_folders_applies_exif_orientation(tmp_path) -> None:
    """A prediction JPEG stored rotated with an EXIF orientation tag is compared as displayed."""
    from PIL import Image

    pred_dir, truth_dir = _two_dirs(tmp_path)
    truth = _box(shape=(40, 60), rows=slice(5, 20), cols=slice(10, 50))
    _write(truth_dir / "ISIC_0000001.png", truth)
    stored = np.rot90(truth, k=1).astype(np.uint8) * 255  # orientation 6 rotates it back on display
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(pred_dir / "ISIC_0000001.jpg", "JPEG", quality=95, exif=exif.tobytes())
    for resize in (False, True):
        row = evaluate_folders(pred_dir, truth_dir, resize_predictions=resize, progress=False).rows[0]
        assert row["pred_resized"] is False and row["dice"] > 0.97


def test_evaluate_folders_pairs_images(folders, tmp_path) -> None:
    pred_dir, truth_dir, _ = folders
    images = tmp_path / "images"
    images.mkdir()
    for k in (1, 2):
        assert cv2.imwrite(str(images / f"ISIC_000000{k}.jpg"), np.zeros((30, 40, 3), np.uint8))
    _write(images / "ISIC_0000001_superpixels.png", np.zeros((30, 40), np.uint8))  # ISIC 2017 layout
    result = evaluate_folders(pred_dir, truth_dir, missing="skip", image_dir=images, progress=False)
    paths = {r["id"]: r["image_path"] for r in result.rows}
    assert paths["ISIC_0000001"].endswith("ISIC_0000001.jpg") and paths["ISIC_0000002"].endswith(".jpg")
    assert paths["ISIC_0000003"] is None and result.summary["n_without_image"] == 2


def test_report_figure_reads_masks_like_the_evaluation(tmp_path) -> None:
    """The --out figure outlines a {0, 1} mask (it used to threshold > 128 and draw nothing)."""
    from skinseg.report import _load_outline_mask

    path = tmp_path / "zero_one.png"
    _write(path, TRUE.astype(np.uint8))  # values {0, 1}
    np.testing.assert_array_equal(_load_outline_mask(str(path)), TRUE)
    assert not _load_outline_mask(None, like=TRUE).any()  # a missing prediction is drawn empty


def test_write_evaluation_report_with_missing_prediction_scored_empty(folders, tmp_path) -> None:
    pred_dir, truth_dir, _ = folders
    result = evaluate_folders(pred_dir, truth_dir, missing="empty", progress=False)
    paths = write_evaluation_report(result, tmp_path / "report")
    assert json.loads(paths["summary"].read_text())["missing"] == "empty"
    assert cv2.imread(str(paths["figure"])) is not None
