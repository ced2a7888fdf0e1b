"""The per-image quality estimate goes wherever a mask goes: the API, results.csv of both engines, the
overlay and the run summary (issue 24)."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import skinseg as ss
from skinseg.errors import ConfigError, SkinsegWarning
from skinseg.inference import Predictor
from skinseg.io import write_image
from skinseg.models.checkpoint import QUALITY_FILE, checkpoint_fingerprint
from skinseg.quality import QualityModel
from skinseg.runs import segment_folder
from skinseg.runs.segment import REVIEW_COLOR
from skinseg.testing import synthetic_lesion

pytest.importorskip("torch")


def _quality(fingerprint: str, review_below: float) -> QualityModel:
    return QualityModel(("soft_dice", "mean_prob_in", "area"), (0.7, 0.7, 0.3), (0.1, 0.1, 0.2), (1.5, 1.0, 0.3),
                        0.4, review_below, {"segmenter_fingerprint": fingerprint})


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with a quality estimate fitted 'for it' (its fingerprint), flagging about half."""
    d = tmp_path_factory.mktemp("q") / "tiny_q"
    shutil.copytree(tiny_checkpoint, d)
    images = [synthetic_lesion((60 + 7 * i, 80), rng=i)[0] for i in range(6)]
    probe = Predictor.load(d, backend="torch", quality=_quality(checkpoint_fingerprint(d), 0.0))
    scores = [probe.segment(im, return_quality=True).quality for im in images]
    (d / QUALITY_FILE).write_text(json.dumps(_quality(checkpoint_fingerprint(d), float(np.median(scores))).to_dict()))
    return d


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    for i in range(6):
        write_image(d / f"img{i}.png", synthetic_lesion((60 + 7 * i, 80), rng=i)[0])
    return d


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def test_the_api_returns_the_estimate_with_the_mask(ckpt, folder):
    predictor = Predictor.load(ckpt, backend="torch")
    assert predictor.quality is not None and "quality" in predictor.settings()
    image = ss.read_image(folder / "img0.png")
    result = predictor.segment(image, return_quality=True)
    mask, quality, review = result
    np.testing.assert_array_equal(mask, predictor.segment(image))
    assert 0 <= quality <= 1 and review == (quality < predictor.quality.review_below)
    assert predictor.segment(image, return_quality=True).quality == quality  # deterministic
    prob = predictor.predict_proba(image)
    assert predictor.estimate_quality(prob, mask, image) == quality
    assert predictor.estimate_quality(prob, np.zeros_like(mask), image) == 0.0  # an empty mask: 0


def test_results_csv_has_the_api_estimate_and_flags_below_the_threshold(ckpt, folder, tmp_path):
    predictor = Predictor.load(ckpt, backend="torch")
    result = segment_folder(predictor, folder, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    flagged = []
    for name, row in rows.items():
        got = predictor.segment(ss.read_image(folder / name), return_quality=True)
        assert row["quality"] == f"{got.quality:.4f}"
        assert row["needs_review"] == ("1" if got.needs_review else "0")
        if got.needs_review:
            flagged.append(name)
    assert 0 < len(flagged) < len(rows)  # the fixture's threshold flags some, not all
    assert sorted(result.flagged) == sorted(flagged)
    assert json.loads((tmp_path / "out" / "run.json").read_text())["last_run"]["needs_review"] == len(flagged)
    for name in rows:  # a flagged mask's overlay carries the review frame, the others do not
        overlay = ss.read_image(tmp_path / "out" / "overlays" / name.replace(".png", "_overlay.png"))
        framed = bool((overlay[0, :] == REVIEW_COLOR).all(axis=-1).any())
        assert framed == (name in flagged), name
    again = segment_folder(predictor, folder, tmp_path / "again", progress=False)
    assert (tmp_path / "again" / "results.csv").read_bytes() == (tmp_path / "out" / "results.csv").read_bytes()
    assert again.flagged == result.flagged


def test_review_below_overrides_and_is_part_of_the_settings(ckpt, folder, tmp_path):
    predictor = Predictor.load(ckpt, backend="torch")
    segment_folder(predictor, folder, tmp_path / "o", progress=False, review_below=1.0)
    assert {r["needs_review"] for r in _rows(tmp_path / "o").values()} == {"1"}
    with pytest.raises(ConfigError, match="review_below"):
        segment_folder(predictor, folder, tmp_path / "o", progress=False, review_below=0.0)


def test_a_model_without_an_estimate_leaves_the_columns_empty(tiny_checkpoint, folder, tmp_path):
    predictor = Predictor.load(tiny_checkpoint, backend="torch")
    assert predictor.quality is None and "quality" not in predictor.settings()
    assert predictor.segment(ss.read_image(folder / "img1.png"), return_quality=True).quality is None
    result = segment_folder(predictor, folder, tmp_path / "o", progress=False)
    assert {(r["quality"], r["needs_review"]) for r in _rows(tmp_path / "o").values()} == {("", "")}
    assert result.flagged == ()
    with pytest.raises(ConfigError, match="quality estimate"):
        segment_folder(predictor, folder, tmp_path / "o2", progress=False, review_below=0.5)


def test_an_estimate_fitted_for_other_weights_is_not_used(ckpt, tiny_checkpoint):
    with pytest.warns(SkinsegWarning, match="other segmenter weights"):
        predictor = Predictor.load(tiny_checkpoint, backend="torch", quality=_quality("0" * 64, 0.5))
    assert predictor.quality is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Predictor.load(ckpt, backend="torch").quality is not None


def test_the_ray_engine_writes_the_same_quality_columns(ckpt, folder, tmp_path, ray_local):
    predictor = Predictor.load(ckpt, backend="torch")
    local = segment_folder(predictor, folder, tmp_path / "local", progress=False)
    ray = segment_folder(predictor, folder, tmp_path / "ray", progress=False, engine="ray")
    assert (tmp_path / "ray" / "results.csv").read_bytes() == (tmp_path / "local" / "results.csv").read_bytes()
    assert ray.flagged == local.flagged
    for f in sorted((tmp_path / "local" / "overlays").iterdir()):
        assert (tmp_path / "ray" / "overlays" / f.name).read_bytes() == f.read_bytes()


def test_evaluate_report_shows_the_estimate_against_the_true_iou(ckpt, tmp_path):
    from skinseg.metrics import evaluate_folders, review_table
    from skinseg.report_html import write_html_report

    images, truths = tmp_path / "images", tmp_path / "truth"
    images.mkdir()
    truths.mkdir()
    for i in range(6):
        image, truth = synthetic_lesion((60 + 7 * i, 80), rng=i)
        write_image(images / f"ISIC_{i:07d}.png", image)
        ss.write_mask(truths / f"ISIC_{i:07d}_segmentation.png", truth)
    segment_folder(Predictor.load(ckpt, backend="torch"), images, tmp_path / "pred", progress=False)
    result = evaluate_folders(tmp_path / "pred", truths, progress=False)
    written = _rows(tmp_path / "pred")
    for row in result.rows:
        assert f"{row['quality']:.4f}" == written[f"{row['id']}.png"]["quality"]
    review = result.summary["quality_review"]
    assert review == review_table([r["quality"] for r in result.rows], [r["iou"] for r in result.rows]) | {
        "n_without_estimate": 0}
    page = write_html_report(result, tmp_path / "report").read_text(encoding="utf-8")
    assert "Which masks to check" in page and page.count("<circle") == len(result.rows)
    assert "lowest 20 %" in page


def test_the_cli_summary_counts_reviews_only_when_the_model_has_an_estimate(ckpt, tiny_checkpoint, folder,
                                                                            tmp_path, capsys):
    from skinseg.cli import main

    assert main(["segment", str(folder), "-o", str(tmp_path / "with"), "--model", str(ckpt), "--quiet",
                 "--backend", "torch"]) == 0
    err = capsys.readouterr().err
    assert "need review" in err and "no quality estimate" not in err
    assert main(["segment", str(folder), "-o", str(tmp_path / "without"), "--model", str(tiny_checkpoint), "--quiet",
                 "--backend", "torch"]) == 0
    captured = capsys.readouterr()
    # without an estimate nothing was flagged because nothing was estimated: say so, count nothing
    assert "no quality estimate ships with" in captured.err and "need review" not in captured.err
    assert "needs_review" not in json.loads(captured.out.strip().splitlines()[-1])
    assert "needs_review" not in json.loads((tmp_path / "without" / "run.json").read_text())["last_run"]
    assert json.loads((tmp_path / "with" / "run.json").read_text())["last_run"]["needs_review"] >= 0
