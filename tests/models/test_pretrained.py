"""The offline ImageNet EfficientNet-Lite0 weights: explicit key mapping, proven by
classifying two scikit-image photos, and loaded into smp's encoder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

import skinseg as ss
from skinseg.models.pretrained import LITE0_STAGE_DEPTHS, load_lite0_imagenet_state_dict, map_lite0_key

# ImageNet-1k class ids
CAT_CLASSES = {281, 282, 283, 284, 285, 286, 287}  # tabby, tiger cat, Persian, Siamese, Egyptian cat, cougar, lynx
CUP_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(scope="module")
def lite0_classifier():
    timm = pytest.importorskip("timm")
    net = timm.create_model("efficientnet_lite0", pretrained=False)
    result = net.load_state_dict(load_lite0_imagenet_state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return net.eval()


def _classify(net, image: np.ndarray) -> list[int]:
    x = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    with torch.no_grad():
        logits = net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
    return logits[0].topk(3).indices.tolist()


def test_key_mapping_is_explicit():
    assert sum(LITE0_STAGE_DEPTHS) == 16
    assert map_lite0_key("_conv_stem.weight") == "conv_stem.weight"
    assert map_lite0_key("_blocks.0._depthwise_conv.weight") == "blocks.0.0.conv_dw.weight"
    assert map_lite0_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert map_lite0_key("_blocks.15._project_conv.weight") == "blocks.6.0.conv_pwl.weight"
    assert map_lite0_key("_blocks.5._bn0.running_var") == "blocks.3.0.bn1.running_var"
    assert map_lite0_key("_bn1.bias") == "bn2.bias"
    with pytest.raises(KeyError):
        map_lite0_key("_blocks.1._squeeze.weight")


def test_chelsea_is_a_cat(lite0_classifier):
    top1 = _classify(lite0_classifier, skimage.data.chelsea())[0]
    assert top1 in CAT_CLASSES, top1


def test_coffee_is_a_cup(lite0_classifier):
    top1 = _classify(lite0_classifier, skimage.data.coffee())[0]
    assert top1 in CUP_CLASSES, top1


def test_segmenter_encoder_receives_the_weights():
    state = load_lite0_imagenet_state_dict(include_head=False)
    model = ss.create_segmenter("unet", encoder_weights="imagenet")
    enc = model.network.encoder.model.state_dict()
    assert torch.equal(enc["conv_stem.weight"], state["conv_stem.weight"])
    assert torch.equal(enc["blocks.5.3.conv_pwl.weight"], state["blocks.5.3.conv_pwl.weight"])
    random_init = ss.create_segmenter("unet", encoder_weights=None)
    assert not torch.equal(random_init.network.encoder.model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
