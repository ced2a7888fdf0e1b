"""Classifier networks, their config, and safetensors checkpoints (single models and ensembles)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._checks import did_you_mean
from ..crops import CROP_MODES
from ..errors import CheckpointError, ConfigError

__all__ = [
    "CLASS_NAMES",
    "ClassifierConfig",
    "Classifier",
    "ClassifierEnsemble",
    "create_classifier",
    "save_classifier",
    "load_classifier",
]

CLASS_NAMES = ("melanoma", "nevus", "seborrheic_keratosis")
"""The ISIC 2017 Part 3 diagnoses, in the order of the bundled classifier's outputs."""

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
ENSEMBLE_FILE = "ensemble.json"
_BUNDLED_ROOT = Path(__file__).resolve().parent.parent / "weights"
_BUNDLED = {"default": "classifier_lite0"}
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild a classifier and prepare its input (stored in config.json)."""

    backbone: str = "efficientnet_lite0"
    class_names: tuple[str, ...] = CLASS_NAMES
    input_size: int = 224
    crop_mode: str = "dilated_bbox"
    margin: float = 0.25
    mean: tuple[float, float, float] = _MEAN
    std: tuple[float, float, float] = _STD
    drop_rate: float = 0.2
    color_norm: str | None = None  # colour constancy of the whole image before cropping ("shades_of_gray")

    def __post_init__(self) -> None:
        if self.color_norm is not None:
            from ..preprocess.color import COLOR_METHODS

            if self.color_norm not in COLOR_METHODS:
                raise ConfigError(f"`color_norm` must be None or one of {', '.join(COLOR_METHODS)}; "
                                  f"got {self.color_norm!r}.")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ConfigError(f"`class_names` must hold at least 2 distinct names; got {self.class_names!r}.")
        if self.crop_mode not in CROP_MODES:
            raise ConfigError(
                f"Unknown crop mode {self.crop_mode!r}{did_you_mean(self.crop_mode, CROP_MODES)}. "
                f"Valid: {', '.join(CROP_MODES)}."
            )
        if not isinstance(self.input_size, int) or self.input_size < 32 or self.input_size % 32:
            raise ConfigError(f"`input_size` must be a multiple of 32, >= 32; got {self.input_size!r}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("`mean` and `std` must hold 3 values each (RGB), std > 0.")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_chans(self) -> int:
        return 4 if self.crop_mode == "mask_channel" else 3

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(
                f"Unknown classifier config keys {sorted(unknown)}; valid keys: {sorted(known)}."
            )
        return cls(**d)


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


class ClassifierEnsemble(nn.Module):
    """Several classifiers whose softmax probabilities are averaged.

    Members may differ in backbone, crop mode and input size, but must share
    ``class_names`` (same classes, same order). ``temperature`` (default 1: none)
    rescales the averaged probabilities as ``softmax(log(p) / T)``
    (:func:`skinseg.metrics.calibration.apply_temperature`) to calibrate them; it is
    fitted on validation data and never changes the predicted class.
    """

    def __init__(self, members: list[Classifier], *, temperature: float = 1.0) -> None:
        super().__init__()
        if not members:
            raise ConfigError("An ensemble needs at least one member.")
        names = {m.config.class_names for m in members}
        if len(names) != 1:
            raise ConfigError(f"Ensemble members disagree on class_names: {sorted(names)}.")
        number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
        if not number or not 0 < temperature < 1e3:
            raise ConfigError(f"`temperature` must be a number > 0 (1: no rescaling); got {temperature!r}.")
        self._members = nn.ModuleList(members)
        self.temperature = float(temperature)
        self.metadata: dict[str, Any] = {}

    @property
    def members(self) -> list[Classifier]:
        return list(self._members)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._members[0].config.class_names


def _timm_name(backbone: str) -> str:
    return backbone[3:] if backbone.startswith("tu-") else backbone


def _load_pretrained(network: nn.Module, backbone: str, pretrained: str | os.PathLike, in_chans: int) -> None:
    """Load ImageNet (offline Lite0/1/2) or local weights into the backbone, leaving the new head random."""
    if str(pretrained).lower() in ("imagenet", "true"):
        from ..models.pretrained import LITE_STAGE_DEPTHS, lite_variant, load_lite_imagenet_state_dict

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
    )
    network = _build(config)
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


def _build(config: ClassifierConfig) -> nn.Module:
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


def save_classifier(
    model: Classifier | ClassifierEnsemble,
    path: str | os.PathLike,
    *,
    metadata: dict[str, Any] | None = None,
    weights_dtype: str = "float32",
) -> Path:
    """Save a classifier (``weights.safetensors`` + ``config.json``) or an ensemble.

    An ensemble is a directory with ``ensemble.json`` and one sub-directory per
    member (``member0``, ``member1``, ...). ``weights_dtype="float16"`` halves the size.
    """
    from safetensors.torch import save as save_bytes

    from .. import __version__
    from .._imagefile import _write_atomic

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, ClassifierEnsemble):
        names = []
        for i, member in enumerate(model.members):
            save_classifier(member, out / f"member{i}", metadata=member.metadata, weights_dtype=weights_dtype)
            names.append(f"member{i}")
        payload = {
            "format": "skinseg-classifier-ensemble",
            "skinseg_version": __version__,
            "members": names,
            "temperature": model.temperature,
            "metadata": metadata or {},
        }
        _write_atomic(out / ENSEMBLE_FILE, json.dumps(payload, indent=2).encode(), overwrite=True)
        return out
    if not isinstance(model, Classifier):
        raise ConfigError("`model` must be a skinseg Classifier or ClassifierEnsemble.")
    if weights_dtype not in ("float32", "float16"):
        raise ConfigError(f"`weights_dtype` must be 'float32' or 'float16'; got {weights_dtype!r}.")
    target = torch.float16 if weights_dtype == "float16" else torch.float32
    state = {
        k: (v.to(target) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.network.state_dict().items()
    }
    payload = {
        "format": "skinseg-classifier",
        "skinseg_version": __version__,
        "config": model.config.to_dict(),
        "metadata": metadata or {},
    }
    try:
        text = json.dumps(payload, indent=2)
    except TypeError as exc:
        raise ConfigError(f"`metadata` must be JSON-serialisable: {exc}") from exc
    _write_atomic(out / WEIGHTS_FILE, save_bytes(state), overwrite=True)
    _write_atomic(out / CONFIG_FILE, text.encode(), overwrite=True)
    return out


def _resolve(path_or_name: str | os.PathLike) -> Path:
    p = Path(path_or_name)
    if p.is_dir():
        return p
    if isinstance(path_or_name, str) and os.sep not in path_or_name and not p.exists():
        d = _BUNDLED_ROOT / _BUNDLED.get(path_or_name, path_or_name)
        if d.is_dir():
            return d
        raise CheckpointError(
            f"No bundled classifier named {path_or_name!r} (looked in '{d}'). "
            f"Available: {', '.join(sorted(_BUNDLED))}. Pass a checkpoint directory instead."
        )
    raise CheckpointError(
        f"Classifier checkpoint '{p}' not found. Pass a directory made by save_classifier or 'default'."
    )


def load_classifier(
    path_or_name: str | os.PathLike = "default", *, device: str = "cpu"
) -> Classifier | ClassifierEnsemble:
    """Load a classifier or ensemble saved by :func:`save_classifier` (or ``"default"``, the bundled one).

    Weights are read with safetensors: loading never executes code from the file.
    Returns the model in eval mode, float32, on ``device``.
    """
    from safetensors.torch import load_file

    from ..models.segmenters import checked_load_state_dict

    d = _resolve(path_or_name)
    if (d / ENSEMBLE_FILE).is_file():
        try:
            payload = json.loads((d / ENSEMBLE_FILE).read_text())
            names = list(payload["members"])
            temperature = float(payload.get("temperature", 1.0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"Cannot read '{d / ENSEMBLE_FILE}': {exc}.") from exc
        members = [load_classifier(d / n, device=device) for n in names]
        ens = ClassifierEnsemble(members, temperature=temperature)
        ens.metadata = payload.get("metadata", {})
        return ens.eval()
    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"'{d}' is not a classifier checkpoint: it needs {WEIGHTS_FILE} and {CONFIG_FILE} "
            f"(or {ENSEMBLE_FILE}). Save one with skinseg.save_classifier(model, dir)."
        )
    try:
        payload = json.loads((d / CONFIG_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot read '{d / CONFIG_FILE}': {exc}.") from exc
    if payload.get("format") != "skinseg-classifier":
        raise CheckpointError(
            f"'{d / CONFIG_FILE}' is not a classifier config (format {payload.get('format')!r}); "
            "segmenters load with skinseg.load_segmenter()."
        )
    try:
        config = ClassifierConfig.from_dict(payload["config"])
    except (TypeError, KeyError, ConfigError) as exc:
        raise CheckpointError(f"Invalid config in '{d / CONFIG_FILE}': {exc}") from exc
    network = _build(config)
    try:
        state = load_file(str(d / WEIGHTS_FILE))
    except Exception as exc:
        raise CheckpointError(
            f"Cannot read weights '{d / WEIGHTS_FILE}': {exc}. The file may be truncated."
        ) from exc
    try:
        checked_load_state_dict(
            network,
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
            what=f"Weights in '{d / WEIGHTS_FILE}'",
        )
    except ConfigError as exc:
        raise CheckpointError(f"{exc} The config.json does not match the weights.") from exc
    model = Classifier(network, config)
    model.metadata = payload.get("metadata", {})
    return model.to(device).eval()
