"""Shared fixtures. Everything is seeded; nothing touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Test-only environment: never reach a model hub or an update check.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

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
