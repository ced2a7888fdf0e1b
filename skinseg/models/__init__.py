"""Segmentation models: factory, registry, checkpoints and offline pretrained weights."""

from __future__ import annotations

from .checkpoint import list_bundled_models, load_segmenter, read_checkpoint_config, save_checkpoint
from .registry import list_segmenters, register_segmenter
from .segmenters import Segmenter, SegmenterConfig, SegmenterEnsemble, create_segmenter

__all__ = [
    "Segmenter",
    "SegmenterConfig",
    "SegmenterEnsemble",
    "create_segmenter",
    "list_bundled_models",
    "list_segmenters",
    "load_segmenter",
    "read_checkpoint_config",
    "register_segmenter",
    "save_checkpoint",
]
