"""``skinseg train`` levers: --color-norm (also added when fine-tuning), --failure-aug, --loss lovasz."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skinseg.cli import main
from skinseg.models import load_segmenter

BASE = ["--epochs", "1", "--batch-size", "2", "--device", "cpu", "--threads", "1"]
TINY = ["--encoder", "resnet18", "--encoder-weights", "none", "--input-size", "64"]


@pytest.mark.slow
def test_new_levers_are_recorded_in_the_checkpoint(tmp_path, seg_folder, capsys):
    root = seg_folder
    rc = main(["train", "--data", str(root), *BASE, *TINY, "--color-norm", "shades_of_gray", "--failure-aug",
               "--loss", "lovasz", "--out", str(tmp_path / "run")])
    assert rc == 0
    capsys.readouterr()
    model = load_segmenter(tmp_path / "run" / "best")
    assert model.config.preprocess["color_norm"] == "shades_of_gray"
    train_config = model.metadata["train_config"]
    assert train_config["loss"] == "lovasz"
    assert train_config["extra"]["failure_augmentation"] == {"ink_p": 0.25, "halo_p": 0.25, "hair_p": 0.2}
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert np.isfinite(history[0]["train_loss"])


@pytest.mark.slow
def test_color_norm_is_added_when_fine_tuning(tmp_path, seg_folder, capsys):
    root = seg_folder
    assert main(["train", "--data", str(root), *BASE, *TINY, "--out", str(tmp_path / "plain")]) == 0
    start = str(tmp_path / "plain" / "best")
    assert load_segmenter(start).config.preprocess == {}
    assert main(["train", "--data", str(root), *BASE, "--init-from", start, "--color-norm", "shades_of_gray",
                 "--out", str(tmp_path / "sog")]) == 0
    sog = load_segmenter(tmp_path / "sog" / "best")
    assert sog.config.preprocess["color_norm"] == "shades_of_gray"
    # the colour-normalised checkpoint fine-tunes again with or without repeating the flag
    again = str(tmp_path / "sog" / "best")
    assert main(["train", "--data", str(root), *BASE, "--init-from", again, "-o", str(tmp_path / "a")]) == 0
    assert load_segmenter(tmp_path / "a" / "best").config.preprocess == sog.config.preprocess
    capsys.readouterr()
    rc = main(["train", "--data", str(root), *BASE, "--init-from", start, "--color-norm", "shades_of_gray",
               "--hair-removal", "dullrazor", "--out", str(tmp_path / "bad")])
    assert rc == 2
    assert "--hair-removal dullrazor differs" in capsys.readouterr().err
