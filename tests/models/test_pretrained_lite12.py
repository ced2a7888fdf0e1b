"""The offline ImageNet EfficientNet-Lite1 and Lite2 weights: explicit key mapping onto timm
``efficientnet_lite1/2``, proven by classifying two scikit-image photos at each variant's
native resolution, and loaded into smp's ``tu-efficientnet_lite1/2`` encoders."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

import skinseg as ss
from skinseg.errors import CheckpointError
from skinseg.models.pretrained import (
    LITE_ENCODERS,
    LITE_STAGE_DEPTHS,
    lite_variant,
    lite_weights_path,
    load_lite_imagenet_state_dict,
    map_lite0_key,
    map_lite_key,
)

CAT_CLASSES = {281, 282, 283, 284, 285, 286, 287}  # tabby .. lynx (ImageNet ids)
CUP_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup
VARIANTS = {"efficientnet_lite1": 240, "efficientnet_lite2": 260}  # native ImageNet input sizes


@pytest.fixture(scope="module", params=sorted(VARIANTS), ids=lambda v: v.split("_")[1])
def lite_classifier(request):
    import timm

    net = timm.create_model(request.param, pretrained=False)
    result = net.load_state_dict(load_lite_imagenet_state_dict(request.param), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return net.eval(), VARIANTS[request.param]


def _top3(net, size: int, image: np.ndarray) -> list[int]:
    x = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
    return logits[0].topk(3).indices.tolist()


def test_stage_depths_match_timm():
    import timm

    for variant, depths in LITE_STAGE_DEPTHS.items():
        net = timm.create_model(variant, pretrained=False)
        assert tuple(len(stage) for stage in net.blocks) == depths, variant
    assert sum(LITE_STAGE_DEPTHS["efficientnet_lite1"]) == sum(LITE_STAGE_DEPTHS["efficientnet_lite2"]) == 21


@pytest.mark.parametrize(
    ("key", "variant", "expected"),
    [
        ("_conv_stem.weight", "efficientnet_lite1", "conv_stem.weight"),
        ("_blocks.0._depthwise_conv.weight", "efficientnet_lite2", "blocks.0.0.conv_dw.weight"),
        ("_blocks.0._project_conv.weight", "efficientnet_lite1", "blocks.0.0.conv_pw.weight"),
        ("_blocks.3._bn0.running_var", "efficientnet_lite1", "blocks.1.2.bn1.running_var"),  # Lite0: 2.0
        ("_blocks.4._expand_conv.weight", "efficientnet_lite2", "blocks.2.0.conv_pw.weight"),
        ("_blocks.15._project_conv.weight", "efficientnet_lite2", "blocks.5.0.conv_pwl.weight"),  # lite0: 6.0
        ("_blocks.19._bn2.bias", "efficientnet_lite1", "blocks.5.4.bn3.bias"),
        ("_blocks.20._project_conv.weight", "efficientnet_lite2", "blocks.6.0.conv_pwl.weight"),
        ("_bn1.bias", "efficientnet_lite2", "bn2.bias"),
        ("_fc.weight", "efficientnet_lite1", "classifier.weight"),
    ],
)
def test_key_mapping_is_explicit(key, variant, expected):
    assert map_lite_key(key, variant) == expected


def test_key_mapping_rejects_what_it_does_not_know():
    with pytest.raises(KeyError, match="block 21"):
        map_lite_key("_blocks.21._project_conv.weight", "efficientnet_lite1")
    with pytest.raises(KeyError, match="block 16"):
        map_lite0_key("_blocks.16._project_conv.weight")
    with pytest.raises(KeyError, match="variant"):
        map_lite_key("_conv_stem.weight", "efficientnet_lite4")
    with pytest.raises(KeyError):
        map_lite_key("_blocks.1._se_reduce.weight", "efficientnet_lite2")  # Lite has no squeeze-excitation


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_tensor_is_mapped_once_with_the_right_shape(variant):
    import timm

    raw = torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True)
    own = timm.create_model(variant, pretrained=False).state_dict()
    mapped = {map_lite_key(k, variant): v for k, v in raw.items() if not k.endswith("num_batches_tracked")}
    assert len(mapped) == len([k for k in raw if not k.endswith("num_batches_tracked")])  # no collisions
    assert set(mapped) == {k for k in own if not k.endswith("num_batches_tracked")}
    assert all(tuple(mapped[k].shape) == tuple(own[k].shape) for k in mapped)


def test_chelsea_is_a_cat(lite_classifier):
    net, size = lite_classifier
    assert _top3(net, size, skimage.data.chelsea())[0] in CAT_CLASSES


def test_coffee_is_a_cup(lite_classifier):
    net, size = lite_classifier
    assert _top3(net, size, skimage.data.coffee())[0] in CUP_CLASSES


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_segmenter_encoder_receives_the_weights(variant):
    state = load_lite_imagenet_state_dict(variant, include_head=False)
    model = ss.create_segmenter("unet", encoder_name=f"tu-{variant}", encoder_weights="imagenet")
    enc = model.network.encoder.model.state_dict()
    last = f"blocks.5.{LITE_STAGE_DEPTHS[variant][5] - 1}.conv_pwl.weight"
    assert torch.equal(enc["conv_stem.weight"], state["conv_stem.weight"])
    assert torch.equal(enc[last], state[last])
    random_init = ss.create_segmenter("unet", encoder_name=f"tu-{variant}", encoder_weights=None)
    assert not torch.equal(random_init.network.encoder.model.state_dict()[last], state[last])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_classifier_backbone_receives_the_weights(variant):
    state = load_lite_imagenet_state_dict(variant)
    clf = ss.create_classifier(variant, pretrained="imagenet", input_size=64)
    own = clf.network.state_dict()
    assert torch.equal(own["blocks.4.3.conv_dw.weight"], state["blocks.4.3.conv_dw.weight"])
    assert own["classifier.weight"].shape == (3, state["classifier.weight"].shape[1])


def test_names():
    assert lite_variant("tu-efficientnet_lite1") == "efficientnet_lite1"
    assert lite_variant("efficientnet_lite2") == "efficientnet_lite2"
    assert lite_variant("tu-efficientnet_lite3") is None
    assert {"tu-efficientnet_lite1", "tu-efficientnet_lite2", "efficientnet_lite0"} <= set(LITE_ENCODERS)
    with pytest.raises(CheckpointError, match="available"):
        lite_weights_path("efficientnet_lite4")


def test_other_encoders_still_refuse_offline_imagenet():
    with pytest.raises(ss.errors.ConfigError, match="tu-efficientnet_lite2"):
        ss.create_segmenter("unet", encoder_name="resnet18", encoder_weights="imagenet")
