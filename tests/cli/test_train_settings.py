"""``skinseg train`` / ``train-classifier`` resume only with the settings they started with (OUT/run.json).

A rerun with other data or hyper-parameters is refused, naming what changed; --overwrite or a new --out
starts again; --threads and --device are not settings. A run folder made before run.json existed (the
runs started with older code: last.pt, history.csv, best/config.json) is adopted when resumed with its
original command line, and refused when what its best checkpoint records disagrees.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skinseg.cli import main

pytest.importorskip("torch")

TINY = ["--encoder", "resnet18", "--encoder-weights", "none", "--input-size", "64", "--epochs", "1",
        "--batch-size", "2", "--max-batches", "1", "--device", "cpu"]
CLASSES = ("melanoma", "nevus", "seborrheic_keratosis")
TINY_CLS = ["--pretrained", "none", "--input-size", "64", "--epochs", "1", "--batch-size", "3",
            "--max-batches", "1"]


def _history(run: Path) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def _refused(capsys, *words: str) -> None:
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: "), err
    assert "other settings" in err and "--overwrite" in err, err
    for word in words:
        assert word in err, (word, err)


@pytest.mark.slow
def test_a_finished_run_is_resumed_only_with_its_settings(tmp_path: Path, seg_folder: Path, make_seg_folder,
                                                         capsys) -> None:
    run = tmp_path / "run"
    base = ["train", "--data", str(seg_folder), *TINY, "--out", str(run)]
    assert main([*base, "--threads", "1"]) == 0
    settings = json.loads((run / "run.json").read_text())
    assert settings["format"] == "skinseg-train-run" and settings["settings"]["train_config"]["lr"] == 0.001
    assert "threads" not in json.dumps(settings) and "device" not in settings["settings"]
    first = _history(run)
    capsys.readouterr()
    assert main([*base, "--threads", "2"]) == 0  # not a setting: resumes (nothing left to train)
    assert _history(run) == first
    assert main([*base, "--lr", "0.0003"]) == 2
    _refused(capsys, "train_config.lr: 0.001 -> 0.0003")
    other = make_seg_folder(tmp_path / "other", n=7)
    assert main(["train", "--data", str(other), *TINY, "--out", str(run)]) == 2
    _refused(capsys, "data:", str(other), "train_images: 4 -> 5")
    assert main([*base, "--loss", "dice"]) == 2
    _refused(capsys, "train_config.loss: 'dice_bce' -> 'dice'")
    assert _history(run) == first  # nothing was mixed in
    assert main([*base, "--lr", "0.0003", "--overwrite"]) == 0  # starts again in the same folder
    assert [h["lr"] for h in _history(run)] == [0.0003]
    assert main([*base, "--lr", "0.0003", "--epochs", "2"]) == 2  # epochs change the schedule
    _refused(capsys, "train_config.epochs: 1 -> 2")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["plain", "fine-tune", "relative-paths"])
def test_a_legacy_run_folder_is_adopted_with_its_original_command(tmp_path: Path, seg_folder: Path,
                                                                  variant: str, tiny_checkpoint: Path,
                                                                  monkeypatch, capsys) -> None:
    """As the runs started with the code before run.json: plain, fine-tuned with --init-from --color-norm,
    and with relative --data / --encoder-weights / --out given from the folder they were started in."""
    run = tmp_path / "run"
    base = ["train", "--data", str(seg_folder), *TINY, "--patience", "3", "--out", str(run)]
    if variant == "fine-tune":
        base = ["train", "--data", str(seg_folder), "--init-from", str(tiny_checkpoint), "--color-norm",
                "shades_of_gray", *TINY[6:], "--patience", "3", "--out", str(run)]
    elif variant == "relative-paths":
        from safetensors.torch import save_file

        from skinseg.models import create_segmenter

        save_file(create_segmenter("unet", encoder_name="resnet18").network.encoder.state_dict(),
                  tmp_path / "enc.safetensors")
        monkeypatch.chdir(tmp_path)
        base = ["train", "--data", "d", *TINY, "--encoder-weights", "enc.safetensors", "--patience", "3",
                "--out", "run"]
    assert main([*base, "--threads", "1"]) == 0
    (run / "run.json").unlink()  # as left by the code before this file existed
    assert sorted(p.name for p in run.iterdir()) == ["best", "history.csv", "history.json", "last.pt",
                                                     "learning_curve.png"]
    capsys.readouterr()
    assert main([*base, "--lr", "0.01"]) == 2  # compared with what best/config.json records
    _refused(capsys, "train_config.lr: 0.001 -> 0.01")
    assert not (run / "run.json").exists()
    assert main([*base, "--threads", "2"]) == 0  # the original command line (other threads): adopted
    assert "was started before skinseg recorded training settings" in capsys.readouterr().err
    payload = json.loads((run / "run.json").read_text())
    assert "adopted" in payload and payload["settings"]["train_config"]["patience"] == 3
    assert main([*base, "--patience", "4"]) == 2  # from now on: the full settings
    _refused(capsys, "train_config.patience: 3 -> 4")


@pytest.mark.slow
def test_a_run_folder_without_results_does_not_lock_its_settings(tmp_path: Path, seg_folder: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"format": "skinseg-train-run", "settings": {"lr": 1}}))
    assert main(["train", "--data", str(seg_folder), *TINY, "--out", str(run)]) == 0
    assert json.loads((run / "run.json").read_text())["settings"]["train_config"]["lr"] == 0.001
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "run.json").write_text(json.dumps({"format": "skinseg-segment-run", "settings": {}}))
    assert main(["train", "--data", str(seg_folder), *TINY, "--out", str(tmp_path / "seg")]) == 2


@pytest.mark.slow
def test_train_classifier_refuses_other_settings_and_adopts_a_legacy_folder(tmp_path: Path, make_seg_folder,
                                                                           capsys) -> None:
    data = make_seg_folder(tmp_path / "d", n=9, labels=CLASSES)
    run = tmp_path / "run"
    base = ["train-classifier", "--data", str(data), *TINY_CLS, "--out", str(run)]
    assert main([*base, "--threads", "1"]) == 0
    assert json.loads((run / "run.json").read_text())["format"] == "skinseg-train-classifier-run"
    capsys.readouterr()
    assert main([*base, "--balance", "sampler"]) == 2
    _refused(capsys, "train_config.balance: 'weights' -> 'sampler'")
    assert main([*base, "--label-map", "nevus=nv"]) == 2
    _refused(capsys, "label_map: None -> {'nevus': 'nv'}")
    (run / "run.json").unlink()  # a folder from before run.json
    assert main([*base, "--crop-mode", "full"]) == 2
    _refused(capsys, "model.crop_mode: 'dilated_bbox' -> 'full'")
    assert main([*base, "--threads", "2"]) == 0
    assert "adopted" in json.loads((run / "run.json").read_text())
