"""SegmenterEnsemble: probability mean of its members, through every inference path,
saved and loaded as one checkpoint folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import skinseg as ss
from skinseg.errors import CheckpointError, ConfigError
from skinseg.models import SegmenterEnsemble, load_segmenter, save_checkpoint

TINY = {"unet": dict(encoder_name="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8)),
        "deeplabv3plus": dict(encoder_name="resnet18", encoder_depth=4)}


def tiny(arch: str, **kw) -> torch.nn.Module:
    return ss.create_segmenter(arch, input_size=64, **{**TINY[arch], **kw})


@pytest.fixture(scope="module")
def members():
    torch.manual_seed(0)
    unet = tiny("unet")
    torch.manual_seed(1)
    deeplab = tiny("deeplabv3plus")
    return [unet, deeplab]


def test_forward_is_the_logit_of_the_mean_member_probability(members):
    ens = SegmenterEnsemble(members).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = (torch.sigmoid(members[0](x)) + torch.sigmoid(members[1](x))) / 2
        got = torch.sigmoid(ens(x))
        # the members disagree, so the mean differs from each member alone
        assert float((torch.sigmoid(members[0](x)) - expected).abs().max()) > 1e-3
    assert got.shape == (2, 1, 64, 96)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("tta", [False, True])
def test_predict_proba_equals_mean_of_member_predictions(members, tta):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (301, 457, 3), dtype=np.uint8)
    ens = SegmenterEnsemble(members)
    p = ss.predict_proba(ens, image, tta=tta)
    ref = (ss.predict_proba(members[0], image, tta=tta) + ss.predict_proba(members[1], image, tta=tta)) / 2
    assert p.shape == (301, 457) and p.dtype == np.float32
    np.testing.assert_allclose(p, ref, atol=1e-5)
    mask = ss.segment(ens, image, tta=tta)
    assert mask.dtype == bool and mask.shape == (301, 457)


def test_threshold_and_tta_belong_to_the_ensemble(members):
    ens = SegmenterEnsemble(members, threshold=0.35, tta=True)
    assert ens.config.threshold == 0.35 and ens.config.tta is True
    assert ens.config.input_size == members[0].config.input_size
    assert members[0].config.threshold == 0.5  # members unchanged
    default = SegmenterEnsemble(members)
    assert default.config.threshold == members[0].config.threshold and default.config.tta is False


def test_save_load_roundtrip(members, tmp_path):
    ens = SegmenterEnsemble(members, threshold=0.45, tta=True)
    save_checkpoint(ens, tmp_path / "ens", metadata={"note": "pair"}, weights_dtype="float32")
    names = sorted(p.name for p in (tmp_path / "ens").iterdir())
    assert names == ["ensemble.json", "member0", "member1"]
    payload = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert payload["format"] == "skinseg-segmenter-ensemble" and payload["members"] == ["member0", "member1"]
    loaded = load_segmenter(tmp_path / "ens")
    assert isinstance(loaded, SegmenterEnsemble)
    assert loaded.config == ens.config and loaded.metadata["note"] == "pair"
    assert [m.config.arch for m in loaded.members] == ["unet", "deeplabv3plus"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ens.eval()(x), loaded(x))
    # a member folder is an ordinary checkpoint
    assert load_segmenter(tmp_path / "ens" / "member1").config == members[1].config
    assert ss.models.checkpoint.resolve_checkpoint(tmp_path / "ens") == tmp_path / "ens"


def test_members_must_share_the_input_settings(members):
    with pytest.raises(ConfigError, match="at least 2 members"):
        SegmenterEnsemble(members[:1])
    other = ss.create_segmenter("unet", input_size=96, encoder_name="resnet18", encoder_depth=3,
                                decoder_channels=(32, 16, 8))
    with pytest.raises(ConfigError, match="share 'input_size'"):
        SegmenterEnsemble([members[0], other])
    with pytest.raises(ConfigError, match="share 'mean'"):
        SegmenterEnsemble([members[0], tiny("unet", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))])
    with pytest.raises(ConfigError, match="must be a skinseg Segmenter"):
        SegmenterEnsemble([members[0], torch.nn.Identity()])


def test_broken_ensemble_folders_are_clear_errors(members, tmp_path):
    d = save_checkpoint(SegmenterEnsemble(members), tmp_path / "ens")
    (d / "ensemble.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="ensemble.json"):
        load_segmenter(d)
    (d / "ensemble.json").write_text(json.dumps({"members": ["../elsewhere", "member1"]}))
    with pytest.raises(CheckpointError, match="not a sub-folder name"):
        load_segmenter(d)
    (d / "ensemble.json").write_text(json.dumps({"members": ["member0", "member9"]}))
    with pytest.raises(CheckpointError, match="member9"):
        load_segmenter(d)
    with pytest.raises(CheckpointError, match="is a segmenter ensemble"):
        ss.models.read_checkpoint_config(d)


def test_segment_cli_runs_an_ensemble_folder_and_onnx_matches(members, tmp_path, capsys):
    from skinseg.cli import main
    from skinseg.io import read_mask, write_image
    from skinseg.testing import synthetic_lesion

    src = tmp_path / "images"
    src.mkdir()
    images = {}
    for i in range(2):
        images[i], _ = synthetic_lesion((70 + 9 * i, 90), rng=i)
        write_image(src / f"ISIC_000000{i}.png", images[i])
    ens = SegmenterEnsemble(members, threshold=0.5, tta=True)
    ckpt = save_checkpoint(ens, tmp_path / "ens")
    out = tmp_path / "out"
    assert main(["segment", str(src), "-o", str(out), "--model", str(ckpt), "--quiet", "--no-overlay"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] == 2
    assert json.loads((out / "run.json").read_text())["settings"]["tta"] is True
    for i, image in images.items():
        expected = ss.segment(load_segmenter(ckpt), image)
        assert np.array_equal(read_mask(out / f"ISIC_000000{i}_segmentation.png"), expected)
    pytest.importorskip("onnxruntime")
    from skinseg.inference import OnnxBackend, export_onnx

    diff = export_onnx(ens, tmp_path / "ens.onnx")
    assert diff < 1e-3
    onnx_model = OnnxBackend(tmp_path / "ens.onnx", threads=1)
    np.testing.assert_allclose(ss.predict_proba(onnx_model, images[1]), ss.predict_proba(ens, images[1]), atol=1e-3)

