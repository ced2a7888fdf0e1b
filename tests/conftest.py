"""Shared fixtures. Everything is seeded; nothing touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Test-only environment: never reach a model hub or an update check.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_CACHE_VARS = ("SKINSEG_CACHE_DIR", "XDG_CACHE_HOME", "MPLCONFIGDIR")
_saved_env: dict[str, str | None] = {}
_CACHE_ROOT = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Every cache the tests could fill (skinseg's ONNX exports, matplotlib's font list, anything that
    follows XDG) goes to one temporary folder for the session, never into the user's ~/.cache; subprocesses
    inherit it."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="skinseg-tests-cache-"))
    config.stash[_CACHE_ROOT] = root
    for name, sub in zip(_CACHE_VARS, ("skinseg", "xdg", "matplotlib"), strict=True):
        _saved_env[name] = os.environ.get(name)
        os.environ[name] = str(root / sub)


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    for name, value in _saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    root = config.stash.get(_CACHE_ROOT, None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_data_dir() -> Path | None:
    env = os.environ.get("SKINSEG_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared" / "data" / "lesions", REPO_ROOT / "shared" / "data" / "lesions"]
    for c in candidates:
        if (c / "manifest.csv").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def lesions_dir() -> Path:
    """The shared ISIC 2017 dev set (images/, masks/, manifest.csv); skips when absent."""
    d = _find_data_dir()
    if d is None:
        pytest.skip("ISIC dev set not found: set SKINSEG_DATA_DIR to the folder holding manifest.csv")
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def rgb_image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)


@pytest.fixture
def odd_image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(65, 47, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small random U-Net (ResNet-18, depth 3, 64 px input) saved as a checkpoint folder."""
    torch = pytest.importorskip("torch")
    from skinseg.models import create_segmenter, save_checkpoint

    torch.manual_seed(0)
    model = create_segmenter(
        "unet", encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), input_size=64
    )
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def tiny_classifier_checkpoint(tmp_path_factory) -> Path:
    """A random EfficientNet-Lite0 classifier (64 px input, the ISIC 2017 classes) saved as a checkpoint."""
    torch = pytest.importorskip("torch")
    import skinseg.classify as C

    torch.manual_seed(0)
    model = C.create_classifier(pretrained=False, input_size=64)
    return C.save_classifier(model, tmp_path_factory.mktemp("clf") / "tiny")


def write_seg_folder(root: Path, n: int = 6, labels: tuple[str, ...] = ()) -> Path:
    """A tiny dev set at ``root``: images/, masks/ (an ellipse lesion) and manifest.csv (the last two images
    are 'val', the others 'train'); with ``labels`` also a label column (cycling through them)."""
    import cv2

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["id,split" + (",label" if labels else "")]
    for i in range(n):
        image = np.full((90, 120, 3), (210, 150, 120), np.uint8)
        mask = np.zeros((90, 120), np.uint8)
        cv2.ellipse(mask, (60 + int(rng.integers(-10, 10)), 45), (25, 18), 0, 0, 360, 255, -1)
        image[mask > 0] = (100, 55, 35)
        cv2.imwrite(str(root / "images" / f"ISIC_{i:07d}.jpg"), image[..., ::-1].copy())
        cv2.imwrite(str(root / "masks" / f"ISIC_{i:07d}.png"), mask)
        label = f",{labels[i % len(labels)]}" if labels else ""
        rows.append(f"ISIC_{i:07d},{'train' if i < n - 2 else 'val'}{label}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def seg_folder(tmp_path: Path) -> Path:
    """:func:`write_seg_folder` in ``tmp_path / "d"``."""
    return write_seg_folder(tmp_path / "d")


@pytest.fixture
def make_seg_folder():
    """:func:`write_seg_folder` itself, for tests that need several or labelled ones."""
    return write_seg_folder


def write_lesion_folder(root: Path, name: str = "x{i}.png", n: int = 3) -> tuple[Path, Path]:
    """``n`` synthetic lesions named ``name.format(i=...)`` in ``root/images`` and their masks
    ``<stem>_segmentation.png`` in ``root/masks`` (for classify runs with ``--masks``)."""
    from skinseg.io import write_image, write_mask
    from skinseg.testing import synthetic_lesion

    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(n):
        image, mask = synthetic_lesion((60, 80), rng=i)
        file = name.format(i=i)
        write_image(images / file, image)
        write_mask(masks / f"{Path(file).stem}_segmentation.png", mask)
    return images, masks


@pytest.fixture
def lesion_folder(tmp_path: Path) -> tuple[Path, Path]:
    """:func:`write_lesion_folder` in ``tmp_path``: ``x0.png`` … ``x2.png`` and their masks."""
    return write_lesion_folder(tmp_path)


@pytest.fixture
def make_lesion_folder():
    """:func:`write_lesion_folder` itself, for other names or counts."""
    return write_lesion_folder
