"""Lesion classifiers over timm: :class:`Classifier`, :class:`ClassifierEnsemble` and :func:`create_classifier`.

Checkpoints (save/load) live in :mod:`skinseg.models.checkpoint`, beside the
segmenters'; inference and Grad-CAM in :mod:`skinseg.classify`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._checks import did_you_mean
from ..errors import CheckpointError, ConfigError
from .config import CLASS_NAMES, ClassifierConfig, check_decision_weights

__all__ = ["Classifier", "ClassifierEnsemble", "create_classifier", "build_classifier_network"]

class Classifier(nn.Module):
    """A timm image classifier plus its :class:`ClassifierConfig`. ``forward`` returns logits."""

    def __init__(self, network: nn.Module, config: ClassifierConfig) -> None:
        super().__init__()
        self.network = network
        self.config = config
        self.metadata: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map (B, C, h, w), used by Grad-CAM."""
        return self.network.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.network.forward_head(features)

    @property
    def members(self) -> list[Classifier]:
        return [self]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    @property
    def classes(self) -> tuple[Any, ...]:
        """The :class:`~skinseg.models.config.ClassInfo` of each output (code, full name, malignant)."""
        return self.config.classes


class ClassifierEnsemble(nn.Module):
    """Several classifiers whose softmax probabilities are averaged.

    Members may differ in backbone, crop mode and input size, but must share
    ``class_names`` (same classes, same order). ``temperature`` (default 1: none)
    rescales the averaged probabilities as ``softmax(log(p) / T)``
    (:func:`skinseg.metrics.calibration.apply_temperature`) to calibrate them; it is
    fitted on validation data and never changes the predicted class. ``decision_weights``
    (default None: argmax) make the predicted class ``argmax(p * w)`` without changing the
    probabilities: a class-prior correction (logit adjustment) chosen on validation data so the
    label serves the balanced accuracy while the probabilities stay calibrated. ``tta`` (default
    False) is the ensemble's own default for flip test-time augmentation: the predictors use it
    unless a caller passes ``tta`` explicitly. ``metadata_model`` (optional,
    :class:`~skinseg.models.metadata.MetadataModel`) fuses patient metadata (age, sex, body site)
    into the probabilities of the images that come with it.
    """

    def __init__(self, members: list[Classifier], *, temperature: float = 1.0,
                 decision_weights: Any = None, tta: bool = False, metadata_model: Any = None) -> None:
        super().__init__()
        if not members:
            raise ConfigError("An ensemble needs at least one member.")
        names = {m.config.class_names for m in members}
        if len(names) != 1:
            raise ConfigError(f"Ensemble members disagree on class_names: {sorted(names)}.")
        if len({m.config.classes for m in members}) != 1:
            raise ConfigError("Ensemble members disagree on class_info (full names, malignancy, the melanoma class).")
        number = isinstance(temperature, int | float) and not isinstance(temperature, bool)
        if not number or not 0 < temperature < 1e3:
            raise ConfigError(f"`temperature` must be a number > 0 (1: no rescaling); got {temperature!r}.")
        if not isinstance(tta, bool):
            raise ConfigError(f"`tta` must be True or False; got {tta!r}.")
        self._members = nn.ModuleList(members)
        self.temperature = float(temperature)
        self.tta = tta
        self.decision_weights = check_decision_weights(decision_weights, len(members[0].config.class_names))
        if metadata_model is not None and tuple(metadata_model.class_names) != members[0].config.class_names:
            raise ConfigError(f"The metadata model's classes {list(metadata_model.class_names)} are not the "
                              f"ensemble's {list(members[0].config.class_names)}.")
        self.metadata_model = metadata_model
        self.metadata: dict[str, Any] = {}

    @property
    def members(self) -> list[Classifier]:
        return list(self._members)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._members[0].config.class_names

    @property
    def classes(self) -> tuple[Any, ...]:
        """The members' :class:`~skinseg.models.config.ClassInfo` of each output."""
        return self._members[0].config.classes


def _timm_name(backbone: str) -> str:
    return backbone[3:] if backbone.startswith("tu-") else backbone


def _load_pretrained(network: nn.Module, backbone: str, pretrained: str | os.PathLike, in_chans: int) -> None:
    """Load ImageNet (offline Lite0/1/2) or local weights into the backbone, leaving the new head random."""
    if str(pretrained).lower() in ("imagenet", "true"):
        from .pretrained import LITE_STAGE_DEPTHS, lite_variant, load_lite_imagenet_state_dict

        variant = lite_variant(backbone)
        if variant is None:
            offline = ", ".join(LITE_STAGE_DEPTHS)
            raise ConfigError(
                f"Offline ImageNet weights exist only for {offline}; for {backbone!r} pass "
                "pretrained=False or the path of a local .safetensors state dict with timm names."
            )
        state = load_lite_imagenet_state_dict(variant, include_head=True)
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise CheckpointError(
                f"Pretrained weights '{path}' not found. Pass 'imagenet' (Lite0 only), "
                "a local .safetensors file, or pretrained=False."
            )
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"Cannot read '{path}' as safetensors: {exc}.") from exc
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    if in_chans == 4 and "conv_stem.weight" in state:
        w = state["conv_stem.weight"]
        state["conv_stem.weight"] = torch.cat(
            [w, torch.zeros_like(w[:, :1])], dim=1
        )  # mask channel starts silent
    own = network.state_dict()
    bad = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise CheckpointError(
            f"{len(bad)} pretrained tensors do not fit backbone {backbone!r}, e.g. {bad[0]!r}."
        )
    missing = [
        k for k in own if k not in state and not k.startswith("classifier.") and "num_batches" not in k
    ]
    if missing:
        raise CheckpointError(
            f"The pretrained weights lack {len(missing)} backbone tensors, e.g. {missing[0]!r}."
        )
    network.load_state_dict(state, strict=False)


def create_classifier(
    backbone: str = "efficientnet_lite0",
    num_classes: int | None = None,
    *,
    pretrained: bool | str | os.PathLike = True,
    class_names: tuple[str, ...] | list[str] | None = None,
    crop_mode: str = "dilated_bbox",
    input_size: int = 224,
    margin: float = 0.25,
    drop_rate: float = 0.2,
    head_init: str = "small",
    color_norm: str | None = None,
    class_info: Any = None,
) -> Classifier:
    """Build a lesion classifier on a timm backbone.

    Parameters
    ----------
    backbone : str
        A timm model name (``"tu-"`` prefix accepted). ``"efficientnet_lite0"``,
        ``"efficientnet_lite1"`` and ``"efficientnet_lite2"`` have offline ImageNet
        weights (the same as the segmenter's encoders).
    num_classes : int, optional
        Defaults to ``len(class_names)``.
    pretrained : bool, "imagenet" or path
        ``True``/``"imagenet"``: offline ImageNet weights (Lite0/1/2 only); a path:
        a local safetensors state dict with timm names; ``False``: random init.
        Nothing is ever downloaded.
    class_names : sequence of str
        Output order; defaults to :data:`CLASS_NAMES` (or ``class0..`` for other counts).
    crop_mode : str
        How the input is cut (see :mod:`skinseg.crops`); ``"mask_channel"`` adds a 4th input channel.
    head_init : {"small", "timm"}
        ``"small"`` (default): the new linear head starts at N(0, 0.01) weights and
        zero bias, so the first logits are ~0 and the first loss ~log K.
        ``"timm"``: timm's own init, whose logits on pretrained Lite0 features
        start with a standard deviation of ~4 (loss ~3.7 for 3 classes); kept to
        reproduce runs made before skinseg 0.1.0's head fix.
    color_norm : {"shades_of_gray"} or None
        Colour constancy (:func:`skinseg.preprocess.normalize_color`, p = 6) applied to
        the whole image before the crop is cut, in training and inference alike.
    class_info : sequence of dict, optional
        Full name, malignancy and the melanoma flag of each class, stored with the model
        (see :class:`ClassifierConfig`); default: :data:`~skinseg.models.config.KNOWN_CLASSES`.
    """
    if head_init not in ("small", "timm"):
        raise ConfigError(f"`head_init` must be 'small' or 'timm'; got {head_init!r}.")

    if class_names is None:
        class_names = (
            CLASS_NAMES
            if num_classes in (None, len(CLASS_NAMES))
            else tuple(f"class{i}" for i in range(int(num_classes or 0)))
        )
    if num_classes is not None and num_classes != len(class_names):
        raise ConfigError(f"num_classes={num_classes} but {len(class_names)} class_names were given.")
    config = ClassifierConfig(
        backbone=backbone,
        class_names=tuple(class_names),
        input_size=input_size,
        crop_mode=crop_mode,
        margin=margin,
        drop_rate=drop_rate,
        color_norm=color_norm,
        class_info=class_info,
    )
    network = build_classifier_network(config)
    if pretrained:
        _load_pretrained(
            network, _timm_name(backbone), "imagenet" if pretrained is True else pretrained, config.in_chans
        )
    if head_init == "small":
        _init_head(network)
    return Classifier(network, config)


def _init_head(network: nn.Module) -> None:
    """Start the new head near zero so the first logits are ~0 (loss ~ log K).

    timm's default head init (uniform, range 1/sqrt(num_classes)) on 1280 pooled
    Lite0 features gives logits with a standard deviation of about 4 on
    dermoscopy crops, a starting loss of ~3.7 instead of log 3 = 1.1, and large
    early gradients that wash into the pretrained backbone.
    """
    head = network.get_classifier() if hasattr(network, "get_classifier") else None
    if isinstance(head, nn.Linear):
        nn.init.normal_(head.weight, std=0.01)
        if head.bias is not None:
            nn.init.zeros_(head.bias)


def build_classifier_network(config: ClassifierConfig) -> nn.Module:
    """The randomly initialised timm network that ``config`` describes."""
    import timm

    name = _timm_name(config.backbone)
    if not timm.is_model(name):
        valid = timm.list_models()
        raise ConfigError(
            f"Unknown backbone {config.backbone!r}{did_you_mean(name, valid)}. "
            "Any timm model name works, e.g. 'efficientnet_lite0', 'resnet18'."
        )
    return timm.create_model(
        name,
        pretrained=False,
        num_classes=config.num_classes,
        in_chans=config.in_chans,
        drop_rate=config.drop_rate,
    )
