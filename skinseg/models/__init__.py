"""Models: segmenters and classifiers, their configs, registry, checkpoints and fingerprints.

One model layer for both kinds of network:

- :mod:`~skinseg.models.config` -- ``SegmenterConfig``, ``ClassifierConfig`` and the
  normalisation constants (torch-free);
- :mod:`~skinseg.models.registry` -- architecture names -> builders (torch-free);
- :mod:`~skinseg.models.segmenters` / :mod:`~skinseg.models.classifiers` -- the networks;
- :mod:`~skinseg.models.checkpoint` -- one safetensors + JSON checkpoint format, bundled
  names, and model fingerprints (readable without torch);
- :mod:`~skinseg.models.pretrained` -- offline ImageNet weights.

Names are resolved lazily (PEP 562), so reading a config or a checkpoint's
fingerprint does not import torch.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "SegmenterConfig": "config",
    "ClassifierConfig": "config",
    "CLASS_NAMES": "config",
    "ClassInfo": "config",
    "KNOWN_CLASSES": "config",
    "read_model_config": "checkpoint",
    "read_ensemble": "checkpoint",
    "IMAGENET_MEAN": "config",
    "IMAGENET_STD": "config",
    "list_segmenters": "registry",
    "register_segmenter": "registry",
    "Segmenter": "segmenters",
    "SegmenterEnsemble": "segmenters",
    "create_segmenter": "segmenters",
    "Classifier": "classifiers",
    "ClassifierEnsemble": "classifiers",
    "create_classifier": "classifiers",
    "save_checkpoint": "checkpoint",
    "save_classifier": "checkpoint",
    "load_segmenter": "checkpoint",
    "load_classifier": "checkpoint",
    "read_checkpoint_config": "checkpoint",
    "list_bundled_models": "checkpoint",
    "bundled_models": "checkpoint",
    "model_fingerprint": "checkpoint",
    "checkpoint_fingerprint": "checkpoint",
    "MetadataModel": "metadata",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
