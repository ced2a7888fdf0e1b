"""Segmentation architectures over segmentation-models-pytorch (smp).

Every model is a :class:`Segmenter`: the smp network plus the
:class:`SegmenterConfig` that rebuilds it and says how to feed it (input size,
normalisation, decision threshold, preprocessing). The network outputs one
logit channel; the sigmoid lives in :mod:`skinseg.inference`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, UnknownNameError
from .checkpoint import load_state_dict_file
from .config import SegmenterConfig
from .pretrained import LITE_ENCODERS, lite_variant, load_lite_imagenet_state_dict
from .registry import check_segmenter_name, get_builder, register_segmenter

__all__ = ["SegmenterConfig", "Segmenter", "SegmenterEnsemble", "create_segmenter", "build_network",
           "checked_load_state_dict"]

class Segmenter(nn.Module):
    """An smp network with its :class:`SegmenterConfig`. ``forward`` returns (N, 1, H, W) logits."""

    def __init__(self, network: nn.Module, config: SegmenterConfig) -> None:
        super().__init__()
        self.network = network
        self.config = config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def extra_repr(self) -> str:
        return f"arch={self.config.arch!r}, encoder={self.config.encoder_name!r}, input_size={self.config.input_size}"


class SegmenterEnsemble(nn.Module):
    """Several segmenters whose lesion probabilities are averaged.

    ``forward`` returns the logit of the members' mean sigmoid probability, so
    every inference path (:func:`skinseg.predict_proba`, flip TTA, ``segment``,
    ``segment_folder``, ONNX export) treats an ensemble like one
    :class:`Segmenter`. The members may differ in architecture and encoder but
    must be fed the same input: equal ``input_size``, ``mean``, ``std`` and
    ``preprocess``.

    Parameters
    ----------
    members : list of Segmenter
    threshold : float, optional
        Decision threshold of the mean probability (default: the first member's).
    tta : bool, optional
        Flip-TTA default of the ensemble (default: the first member's).

    Attributes
    ----------
    config : SegmenterConfig
        The shared input settings with the ensemble's ``threshold`` and ``tta``;
        its ``arch`` / ``encoder_name`` are the first member's (see :attr:`members`).
    """

    _SHARED = ("input_size", "mean", "std", "preprocess")

    def __init__(self, members: list[Segmenter], *, threshold: float | None = None, tta: bool | None = None) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ConfigError(f"A SegmenterEnsemble needs at least 2 members; got {len(members)}.")
        for i, m in enumerate(members):
            if not isinstance(m, Segmenter):
                raise ConfigError(f"Ensemble member {i} must be a skinseg Segmenter; got {type(m).__name__}.")
        first = members[0].config
        for i, m in enumerate(members[1:], start=1):
            for key in self._SHARED:
                if getattr(m.config, key) != getattr(first, key):
                    raise ConfigError(
                        f"Ensemble members must share {key!r}: member 0 has {getattr(first, key)!r}, member {i} "
                        f"has {getattr(m.config, key)!r}. Re-train or fine-tune one of them with the other's setting."
                    )
        changes: dict[str, Any] = {}
        if threshold is not None:
            changes["threshold"] = float(threshold)
        if tta is not None:
            changes["tta"] = tta
        self.config = first.replace(**changes)
        self._members = nn.ModuleList(members)
        self.metadata: dict[str, Any] = {}

    @property
    def members(self) -> list[Segmenter]:
        return list(self._members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = torch.stack([torch.sigmoid(m(x).float()) for m in self._members]).mean(0)
        return torch.logit(prob.clamp(1e-7, 1 - 1e-7))

    def extra_repr(self) -> str:
        return f"members={len(self._members)}, input_size={self.config.input_size}, threshold={self.config.threshold}"


def _smp():
    import segmentation_models_pytorch as smp

    return smp


@register_segmenter("unet")
def _build_unet(config: SegmenterConfig, *, encoder_weights: str | None = None) -> nn.Module:
    kwargs: dict[str, Any] = {}
    if config.decoder_channels is not None:
        kwargs["decoder_channels"] = config.decoder_channels
    elif config.encoder_depth != 5:
        kwargs["decoder_channels"] = (256, 128, 64, 32, 16)[5 - config.encoder_depth :]
    return _smp().Unet(
        encoder_name=config.encoder_name,
        encoder_depth=config.encoder_depth,
        encoder_weights=encoder_weights,
        classes=1,
        **kwargs,
    )


@register_segmenter("deeplabv3plus")
def _build_deeplabv3plus(config: SegmenterConfig, *, encoder_weights: str | None = None) -> nn.Module:
    return _smp().DeepLabV3Plus(
        encoder_name=config.encoder_name,
        encoder_depth=config.encoder_depth,
        encoder_weights=encoder_weights,
        classes=1,
    )


def build_network(config: SegmenterConfig, *, encoder_weights: str | None = None) -> nn.Module:
    """Build the smp network that ``config`` describes through the registry (random init by default).

    ``encoder_weights`` is passed to the builder (smp's own weight names; they may download).
    """
    try:
        return get_builder(config.arch)(config, encoder_weights=encoder_weights)
    except KeyError as exc:  # smp raises KeyError for unknown encoders
        raise UnknownNameError(
            f"Unknown encoder {config.encoder_name!r} for {config.arch!r}: {exc}. "
            "See segmentation_models_pytorch.encoders.get_encoder_names(), or use 'tu-<timm name>'."
        ) from exc


def checked_load_state_dict(module: nn.Module, state: dict[str, torch.Tensor], *, allow_unexpected: bool = False,
                            what: str = "weights") -> None:
    """Load ``state`` into ``module`` after checking names and shapes; raises ConfigError with details.

    Calls ``torch.nn.Module.load_state_dict`` directly (smp's override only warns on mismatches).
    """
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong or (unexpected and not allow_unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected and not allow_unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} vs "
                         f"{tuple(own[wrong[0]].shape)})")
        raise ConfigError(f"{what} do not match the model: " + "; ".join(parts) + ".")
    nn.Module.load_state_dict(module, {k: v for k, v in state.items() if k in own}, strict=False)


def _load_encoder_weights(network: nn.Module, config: SegmenterConfig, encoder_weights: str) -> None:
    if encoder_weights == "imagenet":
        variant = lite_variant(config.encoder_name)
        if variant is None:
            raise ConfigError(
                f"encoder_weights='imagenet' is available offline only for {', '.join(LITE_ENCODERS)}; "
                f"got encoder {config.encoder_name!r}. Use encoder_weights=None, a local weights file "
                "(.safetensors or .pth state dict of the encoder), or encoder_weights='download:imagenet' "
                "to let smp fetch them from the network."
            )
        state = load_lite_imagenet_state_dict(variant, include_head=False)
        checked_load_state_dict(network.encoder.model, state, allow_unexpected=True,
                                what=f"{variant} ImageNet weights")
        return
    path = os.fspath(encoder_weights)
    if not os.path.isfile(path):
        raise ConfigError(
            f"`encoder_weights` must be None, 'imagenet' (offline for Lite0), 'download:<name>' or a path to a "
            f"weights file; got {encoder_weights!r}, which is not a file."
        )
    state = load_state_dict_file(path, what="Encoder weights")
    checked_load_state_dict(network.encoder, state, allow_unexpected=True,
                            what=f"Encoder weights '{path}' for {config.encoder_name!r}")


def create_segmenter(
    arch: str = "unet",
    *,
    encoder_name: str = "tu-efficientnet_lite0",
    encoder_weights: str | os.PathLike | None = None,
    **config_kwargs: Any,
) -> Segmenter:
    """Create a segmentation model.

    Parameters
    ----------
    arch : {"unet", "deeplabv3plus"}
        Architecture, case-insensitive (see :func:`list_segmenters`).
    encoder_name : str
        smp encoder name. ``"tu-efficientnet_lite0"`` (default), ``"tu-efficientnet_lite1"``
        and ``"tu-efficientnet_lite2"`` have ImageNet weights available offline.
    encoder_weights : None, "imagenet", "download:<name>" or path
        ``None``: random initialisation. ``"imagenet"``: offline ImageNet weights
        (EfficientNet-Lite0/1/2 only). ``"download:imagenet"``: let smp download
        weights (needs network; fails fast offline). A path: a local state dict
        of the encoder (``.safetensors`` or ``.pth``, loaded without running code).
    **config_kwargs
        Further :class:`SegmenterConfig` fields (``encoder_depth``, ``input_size``,
        ``decoder_channels``, ``threshold``, ``preprocess``, ...).

    Returns
    -------
    Segmenter
        A ``torch.nn.Module`` producing (N, 1, H, W) logits, in eval mode.
    """
    check_segmenter_name(arch)  # raises with suggestions
    config = SegmenterConfig(arch=arch, encoder_name=encoder_name, **config_kwargs)
    if isinstance(encoder_weights, str) and encoder_weights.startswith("download:"):
        network = _download_network(config, encoder_weights.split(":", 1)[1])
    else:
        network = build_network(config)
        if encoder_weights is not None:
            _load_encoder_weights(network, config, encoder_weights)
    return Segmenter(network, config).eval()


def _download_network(config: SegmenterConfig, weights: str) -> nn.Module:
    """Build with smp's own download; fails fast with a clear message when offline."""
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError as exc:
        raise ConfigError(
            f"Downloading {weights!r} weights for {config.encoder_name!r} needs network access, which is not "
            f"available ({exc}). Use encoder_weights=None, 'imagenet' with tu-efficientnet_lite0, or a local file."
        ) from exc
    return build_network(config, encoder_weights=weights)
