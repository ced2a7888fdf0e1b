"""Optional patient metadata (age, sex, body site) fused into a classifier's probabilities (MetadataModel)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from skinseg.errors import CheckpointError, ConfigError
from skinseg.models.metadata import MetadataModel

CLASSES = ("a", "b", "c")
EDGES = (0, 30, 60)
SITES = ("back", "face", "lower extremity")


def make_model(alpha=1.0, seed=0):
    rng = np.random.default_rng(seed)
    f = len(EDGES) + 2 + len(SITES)
    return MetadataModel(CLASSES, EDGES, SITES, rng.normal(size=(3, f)), rng.normal(size=3), [0.5, 0.3, 0.2], alpha)


def test_features_one_hot_with_missing_fields_as_zeros():
    m = make_model()
    x = m.features({"age": 45, "sex": "Male", "site": "face"})
    np.testing.assert_array_equal(x, [0, 1, 0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(m.features({"age": "75", "localization": "Lower Extremity"}),
                                  [0, 0, 1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(m.features({"sex": "female", "site": "unknown", "age": ""}),
                                  [0, 0, 0, 0, 1, 0, 0, 0])
    assert m.features(None) is None
    assert m.features({"age": "", "sex": "unknown", "site": None}) is None  # nothing known: no fusion
    assert m.features({"age": float("nan")}) is None  # pandas' empty cell


@pytest.mark.parametrize("bad, match", [({"age": "forty"}, "'age' must be a number"),
                                        ({"age": 150}, "between 0 and 120"),
                                        ({"age": float("inf")}, "between 0 and 120"),
                                        ({"sex": "M"}, r"'sex' must be one of \['male', 'female'\]"),
                                        ({"site": "bakc"}, r"'site' must be one of \['back'")])
def test_bad_values_are_refused_with_the_allowed_ones(bad, match):
    with pytest.raises(ConfigError, match=match):
        make_model().features(bad)


def test_proba_is_sklearns_logistic_regression():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(1)
    x = np.zeros((300, 8))
    x[np.arange(300), rng.integers(0, 3, 300)] = 1
    x[np.arange(300), 3 + rng.integers(0, 2, 300)] = 1
    x[np.arange(300), 5 + rng.integers(0, 3, 300)] = 1
    y = rng.integers(0, 3, 300)
    lr = sklearn.LogisticRegression(max_iter=1000).fit(x, y)
    m = MetadataModel(CLASSES, EDGES, SITES, lr.coef_, lr.intercept_, np.bincount(y) / len(y), 1.0)
    np.testing.assert_allclose(m.proba(x), lr.predict_proba(x), rtol=1e-10, atol=1e-12)


def test_fusion_is_the_tempered_likelihood_ratio_and_leaves_images_without_metadata_alone():
    m = make_model(alpha=0.5)
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]], np.float32)
    meta = [{"age": 20, "sex": "female"}, None, {"site": "back"}]
    fused = m.fuse(p, meta)
    np.testing.assert_array_equal(fused[1], p[1])
    for i in (0, 2):
        z = m.features(meta[i]) @ m.coef.T + m.intercept
        pm = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        expect = p[i] * (pm / m.prior) ** 0.5
        np.testing.assert_allclose(fused[i], expect / expect.sum(), rtol=1e-5)
    assert not np.allclose(fused[0], p[0])
    np.testing.assert_allclose(make_model(alpha=0.0).fuse(p, meta), p)
    with pytest.raises(ConfigError, match="3 images but 2 metadata"):
        m.fuse(p, meta[:2])


def test_round_trip_and_bad_stored_models():
    m = make_model(alpha=0.25)
    back = MetadataModel.from_dict(json.loads(json.dumps(m.to_dict())))
    np.testing.assert_array_equal(back.coef, m.coef)
    assert back.alpha == 0.25 and back.sites == SITES and back.age_edges == tuple(float(e) for e in EDGES)
    d = m.to_dict()
    d["coef"] = d["coef"][:2]
    with pytest.raises(ConfigError, match="coef"):
        MetadataModel.from_dict(d)
    with pytest.raises(ConfigError, match="Cannot read a metadata model"):
        MetadataModel.from_dict({"class_names": ["a"]})
    with pytest.raises(ConfigError, match="alpha"):
        make_model(alpha=-1)


# ----------------------------------------------------------------------------- with a classifier

@pytest.fixture(scope="module")
def member(tiny_classifier_checkpoint):
    pytest.importorskip("torch")
    import skinseg.classify as C

    return C.load_classifier(tiny_classifier_checkpoint)


def tiny_meta_model(member, alpha=1.0):
    rng = np.random.default_rng(3)
    k = len(member.class_names)
    return MetadataModel(member.class_names, EDGES, SITES, 3 * rng.normal(size=(k, 8)), rng.normal(size=k),
                         np.full(k, 1 / k), alpha)


def test_ensemble_stores_uses_and_fingerprints_its_metadata_model(member, tmp_path):
    import skinseg.classify as C
    from skinseg.models.checkpoint import checkpoint_fingerprint, model_fingerprint
    from skinseg.testing import synthetic_lesion

    image, mask = synthetic_lesion((70, 90), rng=2)
    mm = tiny_meta_model(member)
    ens = C.ClassifierEnsemble([member], metadata_model=mm)
    plain = C.predict_proba(ens, image, mask)
    np.testing.assert_allclose(plain, C.predict_proba(member, image, mask), rtol=1e-6)  # no metadata: image only
    meta = {"age": 70, "sex": "male", "site": "back"}
    fused = C.predict_proba(ens, image, mask, metadata=meta)
    np.testing.assert_allclose(fused, mm.fuse(plain[None], [meta])[0], rtol=1e-5)
    assert not np.allclose(fused, plain)
    assert C.predict_label(ens, image, mask, metadata=meta) == member.class_names[int(np.argmax(fused))]
    with pytest.raises(ConfigError, match="no metadata model"):
        C.predict_proba(member, image, mask, metadata=meta)
    with pytest.raises(ConfigError, match="'sex' must be one of"):
        C.predict_proba(ens, image, mask, metadata={"sex": "x"})

    folder = C.save_classifier(ens, tmp_path / "ens")
    assert model_fingerprint(ens) != model_fingerprint(C.ClassifierEnsemble([member]))
    assert checkpoint_fingerprint(folder, "classifier") == model_fingerprint(ens)
    back = C.load_classifier(folder)
    np.testing.assert_array_equal(back.metadata_model.coef, mm.coef)
    predictor = C.ClassifierPredictor.load(folder, backend="torch")
    np.testing.assert_allclose(predictor.predict_proba(image, mask, meta), fused, rtol=1e-5, atol=1e-7)

    payload = json.loads((folder / "ensemble.json").read_text())
    payload["metadata_model"]["sites"] = ["back"]
    (folder / "ensemble.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match=r"ensemble\.json.*metadata_model"):
        C.load_classifier(folder)
    other = MetadataModel(("x", "y", "z"), EDGES, SITES, np.zeros((3, 8)), np.zeros(3), np.ones(3), 1.0)
    with pytest.raises(ConfigError, match="metadata model's classes"):
        C.ClassifierEnsemble([member], metadata_model=other)


def _rows(out):
    with open(out / "classification.csv", newline="", encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def test_skinseg_classify_reads_a_metadata_csv(member, lesion_folder, tmp_path, capsys):
    import skinseg.classify as C
    from skinseg.cli import main

    images, masks = lesion_folder
    folder = C.save_classifier(C.ClassifierEnsemble([member], metadata_model=tiny_meta_model(member)),
                               tmp_path / "ens")
    table = tmp_path / "meta.csv"
    table.write_text("file,age,sex,localization\nx0.png,70,male,back\nx1,35,,face\n", encoding="utf-8")
    base = ["classify", str(images), "--classifier", str(folder), "--masks", str(masks), "--no-measure"]
    assert main([*base, "-o", str(tmp_path / "plain")]) == 0
    assert main([*base, "-o", str(tmp_path / "meta"), "--metadata", str(table)]) == 0
    plain, meta = _rows(tmp_path / "plain"), _rows(tmp_path / "meta")
    assert "metadata_used" not in next(iter(plain.values()))
    assert [meta[f"x{i}.png"]["metadata_used"] for i in range(3)] == ["1", "1", "0"]
    code = member.class_names[0]
    assert meta["x2.png"][f"p_{code}"] == plain["x2.png"][f"p_{code}"]  # no row: the image alone
    assert meta["x0.png"][f"p_{code}"] != plain["x0.png"][f"p_{code}"]
    # the metadata is a setting: another table into the same run is refused
    other = tmp_path / "other.csv"
    other.write_text("file,age\nx0.png,20\n", encoding="utf-8")
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "meta"), "--metadata", str(other)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_bad_metadata_is_refused_before_the_run_naming_the_line(member, lesion_folder, tmp_path):
    import skinseg.classify as C
    from skinseg.runs import classify_folder

    images, masks = lesion_folder
    folder = C.save_classifier(C.ClassifierEnsemble([member], metadata_model=tiny_meta_model(member)),
                               tmp_path / "ens")
    table = tmp_path / "meta.csv"
    table.write_text("file,age,sex,site\nx0.png,70,male,back\nx1.png,35,female,elbow\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"meta\.csv' line 3: .*'site' must be one of"):
        classify_folder(images, tmp_path / "out", classifier=str(folder), masks_dir=masks, metadata=table,
                        progress=False)
    assert not (tmp_path / "out" / "classification.csv").exists()
    table.write_text("name,age\nx0.png,70\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="needs a 'file' column"):
        classify_folder(images, tmp_path / "out", classifier=str(folder), masks_dir=masks, metadata=table,
                        progress=False)
    table.write_text("file,age\nx0.png,70\nx0.png,71\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="appears twice"):
        classify_folder(images, tmp_path / "out", classifier=str(folder), masks_dir=masks, metadata=table,
                        progress=False)
    with pytest.raises(ConfigError, match="no metadata model"):
        classify_folder(images, tmp_path / "out", classifier=C.ClassifierEnsemble([member]), masks_dir=masks,
                        metadata={"x0.png": {"age": 70}}, progress=False)
    # a mapping works as the CSV does
    res = classify_folder(images, tmp_path / "out", classifier=str(folder), masks_dir=masks, progress=False,
                          metadata={"x1": {"age": 35, "site": "face"}}, measure=False)
    assert res.n_ok == 3 and [r["metadata_used"] for r in _rows(tmp_path / "out").values()] == ["0", "1", "0"]


@pytest.mark.parametrize("classes", [("a", "b", "c"), ("a", "b")])
def test_fit_matches_sklearn_and_reads_rows_as_inference_does(classes):
    sklearn = pytest.importorskip("sklearn.linear_model")
    from skinseg.models.metadata import fit_metadata_model

    rng = np.random.default_rng(4)
    rows = [{"age": str(int(a)) if a > 5 else "", "sex": rng.choice(["male", "female", "unknown"]),
             "localization": rng.choice(["back", "face", "unknown", "Lower extremity"])} for a in rng.uniform(0, 90, 400)]
    labels = [classes[int(i)] for i in rng.integers(0, len(classes), 400)]
    m = fit_metadata_model(rows, labels, classes, alpha=0.5)
    assert m.sites == ("back", "face", "lower extremity") and m.alpha == 0.5  # 'unknown' is missing, not a site
    x = np.array([m.features(r) if m.features(r) is not None else np.zeros(m.coef.shape[1]) for r in rows])
    y = np.array([classes.index(c) for c in labels])
    ref = sklearn.LogisticRegression(C=1.0, max_iter=2000).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(m.proba(x), ref, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m.prior, np.bincount(y) / len(y))
    with pytest.raises(ConfigError, match="missing"):
        fit_metadata_model(rows, ["a"] * len(rows), classes, alpha=0.5)


def test_a_file_cell_copied_from_classification_csv_matches_its_image(member, make_lesion_folder, tmp_path):
    """classification.csv writes '=0.png as '\\'=0.png' (no spreadsheet formula): the metadata table reads it back."""
    import skinseg.classify as C
    from skinseg.runs import classify_folder

    images, masks = make_lesion_folder(tmp_path, "={i}.png", n=1)
    folder = C.save_classifier(C.ClassifierEnsemble([member], metadata_model=tiny_meta_model(member)),
                               tmp_path / "ens")
    table = tmp_path / "meta.csv"
    table.write_text("file,age,site\n'=0.png,70,\"face\"\n", encoding="utf-8")
    classify_folder(images, tmp_path / "out", classifier=str(folder), masks_dir=masks, metadata=table,
                    progress=False, measure=False)
    assert [r["metadata_used"] for r in _rows(tmp_path / "out").values()] == ["1"]
