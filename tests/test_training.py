"""Data pipeline and training loop on a tiny model and tiny synthetic folders."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

import skinseg as ss
from skinseg._geometry import box_hw
from skinseg.data import LesionSegDataset, collect_items, read_manifest, train_augmentation, val_transform
from skinseg.errors import CheckpointError, ConfigError
from skinseg.training import TrainConfig, fit


def _write_folder(root, n=6, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["id,split"]
    for i in range(n):
        h, w = (90, 120) if i % 2 == 0 else (120, 90)
        image = np.full((h, w, 3), (200, 160, 140), np.uint8)
        mask = np.zeros((h, w), np.uint8)
        cy, cx = rng.integers(30, min(h, w) - 30, size=2)
        cv2.ellipse(mask, (int(cx), int(cy)), (int(rng.integers(10, 25)), int(rng.integers(10, 25))), 0, 0, 360, 255, -1)
        image[mask > 0] = (90, 50, 30)
        cv2.imwrite(str(root / "images" / f"ISIC_{i:07d}.jpg"), image[..., ::-1].copy())
        cv2.imwrite(str(root / "masks" / f"ISIC_{i:07d}.png"), mask)
        rows.append(f"ISIC_{i:07d},{'train' if i < n - 2 else 'val'}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _tiny():
    torch.manual_seed(0)
    return ss.create_segmenter("unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8),
                               input_size=64)


def test_manifest_and_folder_items(tmp_path):
    root = _write_folder(tmp_path / "d")
    assert len(read_manifest(root / "manifest.csv", "train")) == 4
    assert len(collect_items(root, splits="val")) == 2
    assert len(collect_items(root, splits=["train", "val"])) == 6
    with pytest.raises(ConfigError, match="no images"):
        read_manifest(root / "manifest.csv", "test")


def test_dataset_shapes_and_joint_augmentation(tmp_path):
    root = _write_folder(tmp_path / "d")
    items = collect_items(root, splits="train")
    ds = LesionSegDataset(items, input_size=64, transform=train_augmentation(64, seed=1), mean=(0, 0, 0), std=(1, 1, 1))
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (3, *box_hw(64)) and y.shape == (1, *box_hw(64))
        assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
        # the mask moves with the image: lesion pixels are dark in the augmented image
        lesion = x[:, y[0] > 0]
        skin = x[:, (y[0] == 0) & (x.sum(0) > 0.5)]
        if lesion.numel() and skin.numel():
            assert lesion.mean() < skin.mean()
    val = LesionSegDataset(items, input_size=64, transform=val_transform(64), mean=(0, 0, 0), std=(1, 1, 1))
    a, b = val[0], val[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_augmentation_is_seeded(tmp_path):
    root = _write_folder(tmp_path / "d")
    items = collect_items(root, splits="train")
    runs = []
    for _ in range(2):
        ds = LesionSegDataset(items, input_size=64, transform=train_augmentation(64, seed=7), mean=(0, 0, 0),
                              std=(1, 1, 1))
        runs.append(torch.stack([ds[i][0] for i in range(len(ds))]))
    assert torch.equal(runs[0], runs[1])


@pytest.mark.slow
def test_fit_learns_checkpoints_and_resumes(tmp_path):
    root = _write_folder(tmp_path / "d", n=10)
    model = _tiny()
    kw = dict(input_size=64, mean=model.config.mean, std=model.config.std)
    train = LesionSegDataset(collect_items(root, splits="train"), transform=val_transform(64), **kw)
    val = LesionSegDataset(collect_items(root, splits="val"), transform=val_transform(64), **kw)
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-2, seed=0)
    hist = fit(model, train, val, config=cfg, out_dir=tmp_path / "run", progress=False)
    assert [h["epoch"] for h in hist] == [1, 2]
    for name in ["last.pt", "history.csv", "history.json", "learning_curve.png", "best/weights.safetensors"]:
        assert (tmp_path / "run" / name).is_file(), name
    best = ss.load_segmenter(tmp_path / "run" / "best")
    meta = best.metadata
    assert meta["best_epoch"] in (1, 2) and "val_dice" in meta["validation"]
    # resume: a longer schedule continues after epoch 2 instead of starting again
    cfg4 = TrainConfig(epochs=3, batch_size=4, lr=1e-2, seed=0)
    hist2 = fit(_tiny(), train, val, config=cfg4, out_dir=tmp_path / "run", progress=False)
    assert [h["epoch"] for h in hist2] == [1, 2, 3]
    assert hist2[:2] == hist
    assert json.loads((tmp_path / "run" / "history.json").read_text())[-1]["epoch"] == 3
    # a damaged resume state gives a clear error naming the file, not a pickle/zip traceback
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    cfg5 = TrainConfig(epochs=4, batch_size=4, lr=1e-2, seed=0)
    with pytest.raises(CheckpointError, match="last.pt.*delete it"):
        fit(_tiny(), train, val, config=cfg5, out_dir=tmp_path / "run", progress=False)
    # and so does another model's state
    other = tmp_path / "other"
    other.mkdir()
    from skinseg.training import save_resume_state

    net = torch.nn.Linear(2, 2)
    save_resume_state(other / "last.pt", network=net, optimizer=torch.optim.SGD(net.parameters(), lr=1), epoch=0,
                      history=[])
    with pytest.raises(CheckpointError, match="another model"):
        fit(_tiny(), train, val, config=cfg5, out_dir=other, progress=False)


@pytest.mark.slow
def test_fit_is_reproducible(tmp_path):
    root = _write_folder(tmp_path / "d", n=8)
    losses = []
    for k in range(2):
        model = _tiny()
        kw = dict(input_size=64, mean=model.config.mean, std=model.config.std)
        train = LesionSegDataset(collect_items(root, splits="train"), transform=train_augmentation(64, seed=0), **kw)
        val = LesionSegDataset(collect_items(root, splits="val"), transform=val_transform(64), **kw)
        hist = fit(model, train, val, config=TrainConfig(epochs=1, batch_size=3, seed=3), out_dir=tmp_path / f"r{k}",
                   progress=False)
        losses.append(hist[0]["train_loss"])
    assert losses[0] == losses[1]


def test_train_cli_smoke(tmp_path, capsys):
    from skinseg.cli import main

    root = _write_folder(tmp_path / "d", n=6)
    rc = main(["train", "--data", str(root), "--encoder", "resnet18", "--encoder-weights", "none",
               "--input-size", "64", "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "run"),
               "--device", "cpu"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["best_epoch"] == 1
    assert (tmp_path / "run" / "best" / "config.json").is_file()


def test_train_cli_init_from_keeps_or_changes_the_input_size(tmp_path, capsys):
    from skinseg.cli import main
    from skinseg.models import load_segmenter

    root = _write_folder(tmp_path / "d", n=6)
    base = ["train", "--data", str(root), "--epochs", "1", "--batch-size", "2", "--device", "cpu"]
    assert main([*base, "--encoder", "resnet18", "--encoder-weights", "none", "--input-size", "64",
                 "--out", str(tmp_path / "run")]) == 0
    start = tmp_path / "run" / "best"
    assert main([*base, "--init-from", str(start), "--out", str(tmp_path / "same")]) == 0
    assert main([*base, "--init-from", str(start), "--input-size", "96", "--out", str(tmp_path / "big")]) == 0
    capsys.readouterr()
    same, big = load_segmenter(tmp_path / "same" / "best"), load_segmenter(tmp_path / "big" / "best")
    assert same.config.input_size == 64
    assert big.config.input_size == 96
    assert big.config.encoder_name == "resnet18"
    assert big.metadata["init_from"] == str(start)


def test_train_cli_init_from_an_ensemble_names_the_member_folders(tmp_path, capsys):
    from skinseg.cli import main
    from skinseg.models import SegmenterEnsemble, save_checkpoint

    root = _write_folder(tmp_path / "d", n=6)
    ens = save_checkpoint(SegmenterEnsemble([_tiny(), _tiny()]), tmp_path / "ens")
    rc = main(["train", "--data", str(root), "--epochs", "1", "--batch-size", "2", "--device", "cpu",
               "--init-from", str(ens), "--out", str(tmp_path / "run")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "is an ensemble of 2 segmenters" in err and str(ens / "member1") in err
    assert not (tmp_path / "run").exists()


def test_train_cli_refuses_overlap(tmp_path, capsys):
    from skinseg.cli import main

    root = _write_folder(tmp_path / "d", n=6)
    rc = main(["train", "--data", str(root), "--val", str(root / "manifest.csv"), "--val-split", "train",
               "--encoder", "resnet18", "--encoder-weights", "none", "--input-size", "64", "--epochs", "1",
               "--out", str(tmp_path / "run")])
    assert rc == 2
    assert "both the training and validation" in capsys.readouterr().err


def test_train_cli_with_the_same_seed_repeats_every_loss(tmp_path, capsys):
    """Issue 16 (9): the model was built before seeding, so identical runs gave different losses."""
    from skinseg.cli import main

    root = _write_folder(tmp_path / "d", n=6)
    histories = []
    for run in ("a", "b"):
        torch.manual_seed(123 if run == "a" else 456)  # whatever the global RNG held before
        rc = main(["train", "--data", str(root), "--encoder", "resnet18", "--encoder-weights", "none",
                   "--input-size", "64", "--epochs", "2", "--batch-size", "2", "--seed", "7",
                   "--out", str(tmp_path / run), "--device", "cpu", "--threads", "1"])
        assert rc == 0
        histories.append(json.loads((tmp_path / run / "history.json").read_text()))
    for a, b in zip(*histories, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_dice"] == b["val_dice"]


def test_images_without_masks_are_named_not_dropped(tmp_path, capsys):
    """Issue 16 (11): train dropped an image without a mask silently."""
    from skinseg.cli import main
    from skinseg.data import find_pairs

    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        image = np.full((60, 80, 3), 150, np.uint8)
        cv2.imwrite(str(root / "images" / f"a{i}.jpg"), image)
        if i:
            cv2.imwrite(str(root / "masks" / f"a{i}_segmentation.png"), np.pad(np.full((20, 20), 255, np.uint8), ((20, 20), (30, 30))))
    pairs, unlabelled = find_pairs(root)
    assert len(pairs) == 3 and [p.name for p in unlabelled] == ["a0.jpg"]
    with pytest.raises(ConfigError, match="1 image\\(s\\) .* have no mask \\(a0.jpg"):
        collect_items(root)
    assert len(collect_items(root, skip_unlabelled=True)) == 3
    val = _write_folder(tmp_path / "v", n=4)
    args = ["train", "--data", str(root), "--val", str(val), "--encoder", "resnet18", "--encoder-weights", "none",
            "--input-size", "64", "--epochs", "1", "--batch-size", "2", "--out", str(tmp_path / "run")]
    assert main(args) == 2
    assert "a0.jpg" in capsys.readouterr().err
    assert main([*args, "--skip-unlabelled", "--max-batches", "1"]) == 0
    assert "image(s) without a mask were left out" in capsys.readouterr().err
