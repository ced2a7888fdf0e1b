"""Every registered architecture: builds, runs forward/backward, round-trips through
save/load with identical outputs; factory errors and configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import skinseg as ss
from skinseg.errors import CheckpointError, ConfigError, UnknownNameError
from skinseg.models import SegmenterConfig, list_segmenters, load_segmenter, save_checkpoint

TINY = {"unet": dict(encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8)),
        "deeplabv3plus": dict(encoder_name="resnet18", encoder_depth=4)}


def tiny(arch: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return ss.create_segmenter(arch, input_size=64, **{**TINY[arch], **kw})


def test_registry_lists_both_architectures():
    assert list_segmenters() == ["deeplabv3plus", "unet"]
    assert set(TINY) == set(list_segmenters())


@pytest.mark.parametrize("arch", list_segmenters())
def test_forward_backward(arch):
    model = tiny(arch).train()
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 1, 64, 64)
    out.mean().backward()
    head = list(model.network.segmentation_head.parameters())
    stem = next(model.network.encoder.parameters())
    for p in [*head, stem]:
        assert p.grad is not None and float(p.grad.abs().sum()) > 0


@pytest.mark.parametrize("arch", list_segmenters())
def test_save_load_roundtrip_identical(arch, tmp_path):
    model = tiny(arch)
    save_checkpoint(model, tmp_path / "ck", metadata={"note": "test"})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "weights.safetensors"]
    loaded = load_segmenter(tmp_path / "ck")
    assert loaded.config == model.config
    assert loaded.metadata["note"] == "test"
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    payload = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert payload["config"]["arch"] == arch and payload["skinseg_version"] == ss.__version__


@pytest.mark.parametrize("arch", list_segmenters())
@pytest.mark.parametrize("hw", [(301, 457), (65, 47), (1, 1), (33, 900)], ids=str)
def test_predict_proba_maps_back_to_input_size(arch, hw):
    model = tiny(arch)
    image = np.random.default_rng(1).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    prob = ss.predict_proba(model, image)
    assert prob.shape == hw and prob.dtype == np.float32
    assert 0.0 <= prob.min() <= prob.max() <= 1.0


def test_names_are_case_insensitive_and_errors_suggest():
    assert ss.create_segmenter("UNet", **TINY["unet"]).config.arch == "unet"
    with pytest.raises(UnknownNameError, match=r"Available: deeplabv3plus, unet\. Did you mean 'unet'"):
        ss.create_segmenter("unet++", **TINY["unet"])


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(UnknownNameError, match="encoder"):
        ss.create_segmenter("unet", encoder_name="resnet-9000")


def test_imagenet_weights_offline_only_for_lite0():
    with pytest.raises(ConfigError, match="offline only"):
        ss.create_segmenter("unet", encoder_weights="imagenet", **TINY["unet"])


def test_download_fails_fast_offline(monkeypatch):
    import socket
    import time

    def refuse(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="network"):
        ss.create_segmenter("unet", encoder_weights="download:imagenet", **TINY["unet"])
    assert time.perf_counter() - t < 5


def test_local_encoder_weights_file(tmp_path):
    from safetensors.torch import save_file

    src = tiny("unet")
    save_file({k: v.contiguous() for k, v in src.network.encoder.state_dict().items()}, tmp_path / "enc.safetensors")
    model = ss.create_segmenter("unet", encoder_weights=str(tmp_path / "enc.safetensors"), input_size=64, **TINY["unet"])
    for (k, a), b in zip(src.network.encoder.state_dict().items(), model.network.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(ConfigError, match="not a file"):
        ss.create_segmenter("unet", encoder_weights=str(tmp_path / "missing.pth"), **TINY["unet"])


def test_config_validation_and_roundtrip():
    cfg = SegmenterConfig(arch="deeplabv3plus", input_size=320, threshold=0.4)
    assert SegmenterConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="multiple of 32"):
        SegmenterConfig(input_size=250)
    with pytest.raises(ConfigError, match="threshold"):
        SegmenterConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="Unknown SegmenterConfig keys"):
        SegmenterConfig.from_dict({"arch": "unet", "bogus": 1})


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_segmenter(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_segmenter(tmp_path / "half")
    model = tiny("unet")
    save_checkpoint(model, tmp_path / "ck")
    (tmp_path / "ck" / "weights.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="truncated"):
        load_segmenter(tmp_path / "ck")
    save_checkpoint(tiny("deeplabv3plus"), tmp_path / "dl")
    cfg = json.loads((tmp_path / "dl" / "config.json").read_text())
    cfg["config"]["arch"] = "unet"
    (tmp_path / "dl" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match the model"):
        load_segmenter(tmp_path / "dl")


def test_loading_never_unpickles(tmp_path, monkeypatch):
    """load_segmenter reads safetensors + JSON only: torch.load must not be called."""
    save_checkpoint(tiny("unet"), tmp_path / "ck")

    def forbidden(*a, **k):
        raise AssertionError("torch.load called while loading a checkpoint")

    monkeypatch.setattr(torch, "load", forbidden)
    load_segmenter(tmp_path / "ck")


def test_float16_weights_load_as_float32(tmp_path):
    model = tiny("unet")
    save_checkpoint(model, tmp_path / "f32")
    save_checkpoint(model, tmp_path / "f16", weights_dtype="float16")
    size = lambda d: (d / "weights.safetensors").stat().st_size  # noqa: E731
    assert size(tmp_path / "f16") < 0.6 * size(tmp_path / "f32")
    half = load_segmenter(tmp_path / "f16")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = torch.sigmoid(model.eval()(x)), torch.sigmoid(half(x))
    assert float((a - b).abs().max()) < 1e-2
    with pytest.raises(ConfigError, match="weights_dtype"):
        save_checkpoint(model, tmp_path / "x", weights_dtype="int8")
