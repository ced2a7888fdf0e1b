"""Issue 22: sampling weights per data source and per diagnosis for segmenter training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_training import _tiny, _write_folder

import skinseg as ss
from skinseg.data import LesionSegDataset, collect_items, sampling_weights, val_transform
from skinseg.errors import ConfigError
from skinseg.training import TrainConfig, fit


def _label_folder(root, n=6, seed=0, labels=("nv", "bcc")):
    """_write_folder plus a 'label' column (alternating ``labels``)."""
    _write_folder(root, n=n, seed=seed)
    rows = (root / "manifest.csv").read_text().splitlines()
    out = [rows[0] + ",label"] + [f"{r},{labels[i % len(labels)]}" for i, r in enumerate(rows[1:])]
    (root / "manifest.csv").write_text("\n".join(out) + "\n")
    return root


def test_sampling_weights_multiply_set_and_diagnosis():
    w = sampling_weights([0, 0, 1, 1, 1], ["nv", "bcc", "bcc", None, "mel"], set_weights=[2, 0.5],
                         diagnosis_weights={"bcc": 3})
    np.testing.assert_allclose(w, [2 * 1, 2 * 3, 0.5 * 3, 0.5 * 1, 0.5 * 1])
    np.testing.assert_array_equal(sampling_weights([0, 1], ["a", "b"]), [1.0, 1.0])
    # a last source that adds no training image still has its weight in the list
    np.testing.assert_array_equal(sampling_weights([0, 0], [None, None], set_weights=[2, 1]), [2.0, 2.0])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"set_weights": [1]}, "one set weight per data source: images of 2 source"),
    ({"set_weights": [1, 0]}, "finite numbers > 0"),
    ({"set_weights": [1, float("nan")]}, "finite numbers > 0"),
    ({"diagnosis_weights": {"nv": -1}}, "finite numbers > 0"),
    ({"diagnosis_weights": {"akiec": 2}}, r"akiec.*labels present are \['bcc', 'nv'\]"),
])
def test_sampling_weights_refuse_bad_weights(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sampling_weights([0, 1, 1], ["nv", "bcc", None], **kwargs)


class _Recording(torch.utils.data.Dataset):
    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.seen.append(int(i))
        return self.inner[i]


def _sets(tmp_path, n=10):
    root = _write_folder(tmp_path / "d", n=n)
    model = _tiny()
    kw = dict(input_size=64, mean=model.config.mean, std=model.config.std)
    train = LesionSegDataset(collect_items(root, splits="train"), transform=val_transform(64), **kw)
    val = LesionSegDataset(collect_items(root, splits="val"), transform=val_transform(64), **kw)
    return train, val


def test_fit_draws_by_the_sample_weights(tmp_path):
    train, val = _sets(tmp_path, n=10)  # 8 training images
    rec = _Recording(train)
    weights = [0, 0, 0, 0, 1, 1, 1, 1]
    fit(_tiny(), rec, val, config=TrainConfig(epochs=1, batch_size=4, seed=1), out_dir=tmp_path / "run",
        progress=False, sample_weights=weights)
    assert len(rec.seen) == 8  # one epoch draws as many images as the set holds
    assert set(rec.seen) <= {4, 5, 6, 7}  # never an image of weight 0
    # the plain shuffle visits each image once
    rec2 = _Recording(train)
    fit(_tiny(), rec2, val, config=TrainConfig(epochs=1, batch_size=4, seed=1), out_dir=tmp_path / "run2",
        progress=False)
    assert sorted(rec2.seen) == list(range(8))
    with pytest.raises(ConfigError, match="one finite weight >= 0 per training image"):
        fit(_tiny(), train, val, config=TrainConfig(epochs=1, batch_size=4), out_dir=tmp_path / "run3",
            progress=False, sample_weights=[1, 1])


@pytest.mark.slow
def test_weighted_run_resumes_with_the_same_draws(tmp_path):
    train, val = _sets(tmp_path, n=10)
    weights = [1, 2, 3, 4, 1, 2, 3, 4]
    whole = fit(_tiny(), train, val, config=TrainConfig(epochs=2, batch_size=4, seed=5),
                out_dir=tmp_path / "a", progress=False, sample_weights=weights)
    fit(_tiny(), train, val, config=TrainConfig(epochs=1, batch_size=4, seed=5), out_dir=tmp_path / "b",
        progress=False, sample_weights=weights)
    resumed = fit(_tiny(), train, val, config=TrainConfig(epochs=2, batch_size=4, seed=5),
                  out_dir=tmp_path / "b", progress=False, sample_weights=weights)
    assert [h["train_loss"] for h in resumed] == [h["train_loss"] for h in whole]


def test_train_cli_sampling_options(tmp_path, capsys):
    from skinseg.cli import main

    a = _label_folder(tmp_path / "a", n=6, seed=0, labels=("nv", "bcc"))
    b = _label_folder(tmp_path / "b", n=6, seed=1, labels=("mel",))
    base = ["train", "--data", str(a), str(b), "--encoder", "resnet18", "--encoder-weights", "none",
            "--input-size", "64", "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--threads", "1"]
    for extra, message in ((["--set-weights", "2"], "one weight per --data source (2); got 1"),
                           (["--diagnosis-weights", "akiec=2"],
                            "['akiec']; the labels present are ['bcc', 'mel', 'nv']"),
                           (["--diagnosis-weights", "bcc:2"], "LABEL=WEIGHT")):
        capsys.readouterr()
        assert main([*base, *extra, "--out", str(tmp_path / "r0")]) != 0
        assert message in capsys.readouterr().err
        assert not (tmp_path / "r0" / "run.json").exists()  # refused before any work
    run = tmp_path / "r1"
    assert main([*base, "--set-weights", "3", "1", "--diagnosis-weights", "bcc=2", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    # a: 4 images of weights 3,6,3,6 = 18; b: 4 images of weight 1 = 4 -> 81.8 % / 18.2 %
    assert "a 81.8%, b 18.2%" in err
    sampling = json.loads((run / "run.json").read_text())["settings"]["train_config"]["extra"]["sampling"]
    assert sampling == {"set_weights": [3.0, 1.0], "diagnosis_weights": {"bcc": 2.0}}
    assert ss.load_segmenter(run / "best").metadata["train_config"]["extra"]["sampling"] == sampling
    # resuming without the weights is a different run: refused, naming the change
    capsys.readouterr()
    assert main([*base, "--out", str(run)]) != 0
    assert "other settings" in capsys.readouterr().err
