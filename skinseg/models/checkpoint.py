"""Checkpoints of segmenters and classifiers: one format, one loader core.

A checkpoint is a directory with ``weights.safetensors`` (the network's state dict) and
``config.json`` (``format``, ``skinseg_version``, the model's config and free
``metadata``). An ensemble is a directory with ``ensemble.json`` and one such
checkpoint per member (``member0``, ``member1``, ...). Bundled models live in
``skinseg/weights/`` and load by name (``"default"``).

Loading never executes code from a file: weights are safetensors, the config is JSON,
and the model is rebuilt from the config. Reading a config, resolving a bundled name
and computing a model's fingerprint (:func:`checkpoint_fingerprint`) need no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from ..errors import CheckpointError, ConfigError

__all__ = [
    "WEIGHTS_FILE",
    "CONFIG_FILE",
    "ENSEMBLE_FILE",
    "BUNDLED_ROOT",
    "save_checkpoint",
    "save_classifier",
    "load_segmenter",
    "load_classifier",
    "read_checkpoint_config",
    "read_segmenter_config",
    "read_model_config",
    "read_ensemble",
    "resolve_checkpoint",
    "bundled_model_dir",
    "bundled_folder",
    "list_bundled_models",
    "bundled_models",
    "QUALITY_FILE",
    "load_quality_model",
    "BUNDLE_KEY",
    "model_fingerprint",
    "checkpoint_fingerprint",
    "load_torch_file",
    "load_state_dict_file",
]

QUALITY_FILE = "quality.json"
"""A segmenter checkpoint may hold its fitted quality estimate (:class:`skinseg.quality.QualityModel`) here."""
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
ENSEMBLE_FILE = "ensemble.json"
BUNDLED_ROOT = Path(__file__).resolve().parent.parent / "weights"
"""Folder of the models shipped inside the package."""

# kind -> (format of one model, format of an ensemble, bundled name -> folder in BUNDLED_ROOT)
_KINDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "segmenter": ("skinseg-segmenter", "skinseg-segmenter-ensemble",
                  {"default": "unet_lite0_v3", "unet-ham10000-isic2017": "unet_lite0_v3",
                   "unet-isic2017-cc0": "unet_lite0", "deeplabv3plus": "deeplabv3plus_lite0"}),
    "classifier": ("skinseg-classifier", "skinseg-classifier-ensemble",
                   {"default": "classifier7_lite0", "classifier-isic2017-cc0": "classifier_lite0",
                    "classifier-ham10000-7class": "classifier7_lite0"}),
}
BUNDLE_KEY = "bundle"
"""Metadata key of a bundled model's listing entry (:func:`bundled_models`): ``title``, ``training_data``,
``licence``, ``headline`` and ``card``."""
_LOADER = {"segmenter": "skinseg.load_segmenter()", "classifier": "skinseg.load_classifier()"}


# ----------------------------------------------------------------------------- locating checkpoints


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot read '{path}': {exc}. Re-save the checkpoint.") from exc


def _kind_of(d: Path) -> str | None:
    """'segmenter' / 'classifier' for a checkpoint folder (single or ensemble), else None."""
    for name in (ENSEMBLE_FILE, CONFIG_FILE):
        try:
            fmt = json.loads((d / name).read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            continue
        for kind, (single, ensemble, _) in _KINDS.items():
            if fmt in (single, ensemble):
                return kind
    return None


def list_bundled_models(kind: str = "segmenter") -> list[str]:
    """Names accepted by :func:`load_segmenter` (``kind="segmenter"``) or :func:`load_classifier` besides paths."""
    table = _KINDS[kind][2]
    folders = {p.name for p in BUNDLED_ROOT.glob("*") if p.is_dir() and _kind_of(p) == kind}
    return sorted({n for n, f in table.items() if f in folders} | (folders - set(table.values())))


def bundled_models(kind: str | None = None) -> list[dict[str, Any]]:
    """Every bundled model: one dict per name (``skinseg models``), without torch.

    Keys: ``name``, ``kind`` ("segmenter" / "classifier"), ``folder``, ``aliases`` (other
    names of the same folder), ``architecture`` (from its config), and from the model's
    ``metadata["bundle"]`` entry: ``title``, ``training_data``, ``licence``, ``headline``
    (its headline score, with split and aggregation) and ``card`` (the model card's path in
    the documentation). ``default`` comes first within each kind.
    """
    kinds = [kind] if kind is not None else list(_KINDS)
    out = []
    for k in kinds:
        for name in sorted(list_bundled_models(k), key=lambda n: (n != "default", n)):
            d = bundled_model_dir(name, k)
            aliases = [n for n in list_bundled_models(k) if n != name and bundled_folder(n, k) == d]
            single = d / CONFIG_FILE if (d / CONFIG_FILE).is_file() else None
            payload = _read_json(single or d / ENSEMBLE_FILE)
            first = payload if single else _read_json(d / _ensemble_members(d)[1][0] / CONFIG_FILE)
            meta = payload.get("metadata") or {}
            info = meta.get(BUNDLE_KEY) or {}
            out.append({"name": name, "kind": k, "folder": d.name, "aliases": aliases,
                        "architecture": _architecture(first.get("config", {}), k,
                                                      None if single else len(_ensemble_members(d)[1]))
                        + (", flip TTA" if k == "classifier" and payload.get("tta") is True else "")
                        + (", optional metadata input (age, sex, body site)"
                           if k == "classifier" and payload.get("metadata_model") else ""),
                        **{key: info.get(key, "") for key in ("title", "training_data", "licence", "headline", "card")}})
    return out


def _architecture(config: Mapping[str, Any], kind: str, members: int | None) -> str:
    if kind == "segmenter":
        text = f"{config.get('arch', '?')} / {config.get('encoder_name', '?')}, {config.get('input_size', '?')} px"
    else:
        text = (f"{config.get('backbone', '?')}, {config.get('input_size', '?')} px, "
                f"{len(config.get('class_names') or [])} classes")
    return text if members is None else f"ensemble of {members}: {text}"


def bundled_folder(name: str = "default", kind: str = "segmenter") -> Path:
    """Where the bundled model ``name`` lives (or would live) in :data:`BUNDLED_ROOT`; for bundling tools."""
    return BUNDLED_ROOT / _KINDS[kind][2].get(name, name)


def bundled_model_dir(name: str, kind: str = "segmenter") -> Path:
    """Directory of a model shipped inside the package (``kind``: "segmenter" or "classifier")."""
    d = bundled_folder(name, kind)
    if _kind_of(d) != kind:
        raise CheckpointError(
            f"The bundled {kind} {name!r} is not installed (looked in '{d}'). Available: "
            f"{', '.join(list_bundled_models(kind)) or 'none'}. Pass a checkpoint directory instead."
        )
    return d


def resolve_checkpoint(path_or_name: str | os.PathLike, kind: str = "segmenter") -> Path:
    """The checkpoint directory of a path or a bundled name; checks that it is complete."""
    p = Path(path_or_name)
    if p.is_dir():
        if (p / ENSEMBLE_FILE).is_file():
            return p
        if not (p / CONFIG_FILE).is_file() or not (p / WEIGHTS_FILE).is_file():
            saver = "save_checkpoint" if kind == "segmenter" else "save_classifier"
            raise CheckpointError(
                f"'{p}' is not a complete checkpoint: it needs {WEIGHTS_FILE} and {CONFIG_FILE} (or "
                f"{ENSEMBLE_FILE}). Save one with skinseg.{saver}(model, dir)."
            )
        return p
    if isinstance(path_or_name, str) and os.sep not in path_or_name and not p.exists():
        return bundled_model_dir(path_or_name, kind)
    raise CheckpointError(
        f"Checkpoint '{p}' not found. Pass a directory holding {WEIGHTS_FILE} and {CONFIG_FILE}, "
        f"or a bundled name: {', '.join(list_bundled_models(kind)) or 'none'}."
    )


def _single_payload(d: Path, kind: str) -> dict[str, Any]:
    payload = _read_json(d / CONFIG_FILE)
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"'{d / CONFIG_FILE}' is not a skinseg checkpoint config (no 'config' entry).")
    fmt = payload.get("format")
    if kind == "classifier" and fmt != _KINDS[kind][0]:
        raise CheckpointError(
            f"'{d / CONFIG_FILE}' is not a classifier config (format {fmt!r}); segmenters load with "
            f"{_LOADER['segmenter']}."
        )
    if kind == "segmenter" and fmt == _KINDS["classifier"][0]:
        raise CheckpointError(
            f"'{d / CONFIG_FILE}' is a classifier; load it with {_LOADER['classifier']}."
        )
    return payload


def _ensemble_members(d: Path) -> tuple[dict[str, Any], list[str]]:
    payload = _read_json(d / ENSEMBLE_FILE)
    try:
        names = [str(n) for n in payload["members"]]
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"Cannot read '{d / ENSEMBLE_FILE}': no member list ({exc}). Re-save the ensemble.") from exc
    for n in names:
        if Path(n).name != n or n in ("", ".", ".."):
            raise CheckpointError(f"'{d / ENSEMBLE_FILE}' names member {n!r}, which is not a sub-folder name.")
    return payload, names


def read_checkpoint_config(path_or_name: str | os.PathLike) -> dict[str, Any]:
    """Return the parsed ``config.json`` of a segmenter checkpoint directory or bundled name."""
    d = resolve_checkpoint(path_or_name, "segmenter")
    if (d / ENSEMBLE_FILE).is_file():
        raise CheckpointError(
            f"'{d}' is a segmenter ensemble: its settings are in '{d / ENSEMBLE_FILE}' and each member "
            "(member0, member1, ...) has its own config.json. Load it with skinseg.load_segmenter()."
        )
    return _single_payload(d, "segmenter")


def read_segmenter_config(path_or_name: str | os.PathLike) -> Any:
    """The :class:`~skinseg.models.SegmenterConfig` of a checkpoint (an ensemble's shared one), without torch."""
    from .config import SegmenterConfig

    d = resolve_checkpoint(path_or_name, "segmenter")
    if (d / ENSEMBLE_FILE).is_file():
        payload, names = _ensemble_members(d)
        first = read_segmenter_config(d / names[0])
        changes = {k: payload[k] for k in ("threshold", "tta") if payload.get(k) is not None}
        return first.replace(**changes)
    try:
        return SegmenterConfig.from_dict(_single_payload(d, "segmenter")["config"])
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"Invalid config in '{d / CONFIG_FILE}': {exc}") from exc


def read_model_config(path_or_name: str | os.PathLike, kind: str = "segmenter") -> Any:
    """The config of a checkpoint without torch: :func:`read_segmenter_config`, or a single classifier's
    :class:`~skinseg.models.ClassifierConfig` (an ensemble's members have one each)."""
    if kind == "segmenter":
        return read_segmenter_config(path_or_name)
    from .config import ClassifierConfig

    d = resolve_checkpoint(path_or_name, "classifier")
    if (d / ENSEMBLE_FILE).is_file():
        raise CheckpointError(f"'{d}' is a classifier ensemble: each member (member0, member1, ...) has its own "
                              "config.json. Read a member's, or load the ensemble with skinseg.load_classifier().")
    try:
        return ClassifierConfig.from_dict(_single_payload(d, "classifier")["config"])
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"Invalid config in '{d / CONFIG_FILE}': {exc}") from exc


def read_ensemble(path_or_name: str | os.PathLike, kind: str = "classifier") -> tuple[Path, list[Path], dict[str, Any]]:
    """(checkpoint folder, member folders, ensemble.json payload) of a checkpoint, without torch.

    A single model is an ensemble of itself (its folder as the one member, an empty payload).
    """
    d = resolve_checkpoint(path_or_name, kind)
    if not (d / ENSEMBLE_FILE).is_file():
        return d, [d], {}
    payload, names = _ensemble_members(d)
    return d, [d / n for n in names], payload


# ----------------------------------------------------------------------------- saving


def _save_single(network: Any, config: Any, out: Path, fmt: str, metadata: dict | None, weights_dtype: str) -> Path:
    import torch
    from safetensors.torch import save as save_bytes

    from .. import __version__

    if weights_dtype not in ("float32", "float16"):
        raise ConfigError(f"`weights_dtype` must be 'float32' or 'float16'; got {weights_dtype!r}.")
    target = torch.float16 if weights_dtype == "float16" else torch.float32
    state = {k: (v.to(target) if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in network.state_dict().items()}
    payload = {"format": fmt, "skinseg_version": __version__, "config": config.to_dict(), "metadata": metadata or {}}
    try:
        text = json.dumps(payload, indent=2)
    except TypeError as exc:
        raise ConfigError(f"`metadata` must be JSON-serialisable: {exc}") from exc
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / WEIGHTS_FILE, save_bytes(state))
    atomic_write(out / CONFIG_FILE, text)
    return out


def _save_ensemble(members: list[Any], save_member: Any, out: Path, fmt: str, extra: dict[str, Any],
                   metadata: dict | None, weights_dtype: str) -> Path:
    from .. import __version__

    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i, member in enumerate(members):
        save_member(member, out / f"member{i}", metadata=getattr(member, "metadata", {}), weights_dtype=weights_dtype)
        names.append(f"member{i}")
    payload = {"format": fmt, "skinseg_version": __version__, "members": names, **extra, "metadata": metadata or {}}
    try:
        text = json.dumps(payload, indent=2)
    except TypeError as exc:
        raise ConfigError(f"`metadata` must be JSON-serialisable: {exc}") from exc
    atomic_write(out / ENSEMBLE_FILE, text)
    return out


def save_checkpoint(model: Any, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                    weights_dtype: str = "float32") -> Path:
    """Save a :class:`Segmenter` as ``path/weights.safetensors`` + ``path/config.json``.

    ``metadata`` (JSON-serialisable: training data, scores, ...) is stored beside
    the config. ``weights_dtype="float16"`` stores floating-point tensors at half
    precision (half the file size; :func:`load_segmenter` casts them back to the
    model's float32). Both files are written atomically. Returns the directory.

    A :class:`SegmenterEnsemble` is saved as ``path/ensemble.json`` (threshold,
    TTA default, metadata) and one checkpoint per member (``member0``, ...).
    """
    from .segmenters import SegmenterEnsemble

    single, ensemble, _ = _KINDS["segmenter"]
    if isinstance(model, SegmenterEnsemble):
        extra = {"threshold": model.config.threshold, "tta": model.config.tta}
        return _save_ensemble(model.members, save_checkpoint, Path(path), ensemble, extra, metadata, weights_dtype)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict") or not hasattr(model, "network"):
        raise ConfigError("`model` must be a skinseg Segmenter (made by create_segmenter or load_segmenter).")
    return _save_single(model.network, config, Path(path), single, metadata, weights_dtype)


def save_classifier(model: Any, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                    weights_dtype: str = "float32") -> Path:
    """Save a classifier (``weights.safetensors`` + ``config.json``) or an ensemble.

    An ensemble is a directory with ``ensemble.json`` and one sub-directory per
    member (``member0``, ``member1``, ...). ``weights_dtype="float16"`` halves the size.
    """
    from .classifiers import Classifier, ClassifierEnsemble

    single, ensemble, _ = _KINDS["classifier"]
    if isinstance(model, ClassifierEnsemble):
        extra: dict[str, Any] = {"temperature": model.temperature}
        if model.decision_weights is not None:
            extra["decision_weights"] = list(model.decision_weights)
        if model.tta:
            extra["tta"] = True
        if getattr(model, "metadata_model", None) is not None:
            extra["metadata_model"] = model.metadata_model.to_dict()
        return _save_ensemble(model.members, save_classifier, Path(path), ensemble, extra, metadata, weights_dtype)
    if not isinstance(model, Classifier):
        raise ConfigError("`model` must be a skinseg Classifier or ClassifierEnsemble.")
    return _save_single(model.network, model.config, Path(path), single, metadata, weights_dtype)


# ----------------------------------------------------------------------------- loading


def _load_state(d: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(d / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"Cannot read weights '{d / WEIGHTS_FILE}': {exc}. The file may be truncated.") from exc


def _load_single(d: Path, kind: str, config_cls: Any, build: Any, wrap: Any, device: str) -> Any:
    from .segmenters import checked_load_state_dict

    payload = _single_payload(d, kind)
    try:
        config = config_cls.from_dict(payload["config"])
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"Invalid config in '{d / CONFIG_FILE}': {exc}") from exc
    network = build(config)
    state = _load_state(d)
    try:
        checked_load_state_dict(network, {k: v.float() if v.is_floating_point() else v for k, v in state.items()},
                                what=f"Weights in '{d / WEIGHTS_FILE}'")
    except ConfigError as exc:
        raise CheckpointError(f"{exc} The config.json does not match the weights.") from exc
    model = wrap(network, config)
    model.metadata = payload.get("metadata", {})
    return model.to(device).eval()


def load_segmenter(path_or_name: str | os.PathLike = "default", *, device: str = "cpu") -> Any:
    """Load a segmenter from a checkpoint directory or a bundled name (``"default"``).

    Returns the model (a :class:`Segmenter`, or a :class:`SegmenterEnsemble` for
    a directory with ``ensemble.json``) in eval mode on ``device``; its
    ``metadata`` attribute holds the stored training data and scores.
    """
    from .config import SegmenterConfig
    from .segmenters import Segmenter, SegmenterEnsemble, build_network

    d = resolve_checkpoint(path_or_name, "segmenter")
    if (d / ENSEMBLE_FILE).is_file():
        payload, names = _ensemble_members(d)
        members = []
        for n in names:
            member = load_segmenter(d / n, device=device)
            if not isinstance(member, Segmenter):
                raise CheckpointError(f"Ensemble member '{d / n}' is itself an ensemble; nest members flat.")
            members.append(member)
        try:
            ens = SegmenterEnsemble(members, threshold=payload.get("threshold"), tta=payload.get("tta"))
        except ConfigError as exc:
            raise CheckpointError(f"Invalid ensemble '{d}': {exc}") from exc
        ens.metadata = payload.get("metadata", {})
        ens.quality = load_quality_model(d)
        return ens.to(device).eval()
    model = _load_single(d, "segmenter", SegmenterConfig, build_network, Segmenter, device)
    model.quality = load_quality_model(d)
    return model


def load_quality_model(path_or_name: str | os.PathLike = "default") -> Any:
    """The quality estimate fitted for a segmenter checkpoint (its ``quality.json``), or None if it has none.

    Returns a :class:`skinseg.quality.QualityModel`; its ``record["segmenter_fingerprint"]``
    names the weights it was fitted for (a :class:`~skinseg.inference.Predictor` uses it only
    with those). Reads JSON only: no torch, no code.
    """
    from ..quality import QualityModel

    d = resolve_checkpoint(path_or_name, "segmenter")
    path = d / QUALITY_FILE
    if not path.is_file():
        return None
    try:
        return QualityModel.from_dict(_read_json(path))
    except (ConfigError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"Invalid quality estimate '{path}': {exc}. Refit it (benchmarks/quality_signals.py "
                              "--fit-out) or delete the file.") from exc


def ensemble_tta(payload: dict[str, Any], where: Any) -> bool:
    """A classifier ensemble's stored default for flip TTA (``"tta"`` in ensemble.json; absent: False)."""
    tta = payload.get("tta", False)
    if not isinstance(tta, bool):
        raise CheckpointError(f"Cannot read '{where}': \"tta\" must be true or false; got {tta!r}.")
    return tta


def ensemble_metadata_model(payload: dict[str, Any], where: Any) -> Any:
    """A classifier ensemble's :class:`~skinseg.models.metadata.MetadataModel` (``"metadata_model"`` in
    ensemble.json), or None."""
    from .metadata import MetadataModel

    stored = payload.get("metadata_model")
    if stored is None:
        return None
    try:
        if not isinstance(stored, dict):
            raise ConfigError(f"expected an object, got {type(stored).__name__}")
        return MetadataModel.from_dict(stored)
    except ConfigError as exc:
        raise CheckpointError(f"Cannot read '{where}': bad \"metadata_model\" ({exc}).") from exc


def load_classifier(path_or_name: str | os.PathLike = "default", *, device: str = "cpu") -> Any:
    """Load a classifier or ensemble saved by :func:`save_classifier` (or ``"default"``, the bundled one).

    Weights are read with safetensors: loading never executes code from the file.
    Returns the model in eval mode, float32, on ``device``.
    """
    from .classifiers import Classifier, ClassifierEnsemble, build_classifier_network
    from .config import ClassifierConfig

    d = resolve_checkpoint(path_or_name, "classifier")
    if (d / ENSEMBLE_FILE).is_file():
        payload, names = _ensemble_members(d)
        try:
            temperature = float(payload.get("temperature", 1.0))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"Cannot read '{d / ENSEMBLE_FILE}': bad temperature ({exc}).") from exc
        ens = ClassifierEnsemble([load_classifier(d / n, device=device) for n in names], temperature=temperature,
                                 decision_weights=payload.get("decision_weights"),
                                 tta=ensemble_tta(payload, d / ENSEMBLE_FILE),
                                 metadata_model=ensemble_metadata_model(payload, d / ENSEMBLE_FILE))
        ens.metadata = payload.get("metadata", {})
        return ens.eval()
    return _load_single(d, "classifier", ClassifierConfig, build_classifier_network, Classifier, device)


# ----------------------------------------------------------------------------- torch files


def _blocked_line(message: str) -> str:
    """The sentence of a refused ``weights_only`` load that names what was blocked, else ''."""
    lines = (line.strip() for line in message.splitlines())
    return next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), "")


def load_torch_file(path: str | os.PathLike, *, what: str = "File") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: tensors and plain containers, never code.

    Raises
    ------
    CheckpointError
        The file holds other Python objects (a pickle that could run code: refused, and no
        code from it ran), or is not a torch file at all (damaged, another format); the
        message names the file and keeps torch's reason in whole sentences.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = _blocked_line(str(exc))
        raise CheckpointError(
            f"{what} '{path}' holds Python objects other than tensors, which could run code when loaded. "
            "skinseg loads torch files with weights_only=True, so it refused the file and ran no code from it"
            + (f" ({blocked.rstrip('.')})" if blocked else "")
            + ". Re-save only the tensors (torch.save(model.state_dict(), path), or safetensors) from a copy "
            "you trust, or use another file."
        ) from None
    except Exception as exc:  # a damaged or foreign file: torch raises many types (KeyError, RuntimeError)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(
            f"{what} '{path}' is not a readable torch file ({type(exc).__name__}: {reason}). It is damaged "
            "or in another format; pass a state dict saved with torch.save, or a .safetensors file."
        ) from None


def load_state_dict_file(path: str | os.PathLike, *, what: str = "Weights file") -> dict[str, Any]:
    """A state dict (``{name: tensor}``) from a ``.safetensors`` file or a torch file, without running code.

    Raises
    ------
    CheckpointError
        The file cannot be read (see :func:`load_torch_file`) or holds no tensors by name.
    """
    import torch

    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{what} '{path}' is not a readable safetensors file ({exc}). Fetch it "
                                  "again or pass another file.") from None
    else:
        state = load_torch_file(path, what=what)
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint that wraps its state dict
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        other = "of other values " if isinstance(state, Mapping) else ""
        raise CheckpointError(
            f"{what} '{path}' holds {type(state).__name__} {other}rather than a state dict of named tensors. "
            "Save one with torch.save(module.state_dict(), path)."
        )
    return dict(state)


# ----------------------------------------------------------------------------- fingerprints


def _hash(config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(dict(config), sort_keys=True).encode())
    for name in sorted(arrays):
        a = arrays[name]
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float32, copy=False)
        h.update(name.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _combine(kind: str, members: list[str], extra: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"ensemble": kind, "members": members, **extra}, sort_keys=True).encode()).hexdigest()


def model_fingerprint(model: Any) -> str:
    """SHA-256 identifying a model's config and weights (``model.fingerprint`` if it has one).

    Equal to :func:`checkpoint_fingerprint` of the checkpoint the model was loaded
    from (float tensors are hashed at float32, names in sorted order), so a folder
    run records which model made it and a resume with other weights is refused.
    """
    own = getattr(model, "fingerprint", None)
    if isinstance(own, str):
        return own
    members = getattr(model, "members", None)
    if hasattr(model, "_members") and members is not None:  # an ensemble
        extra = {"threshold": model.config.threshold, "tta": model.config.tta} if hasattr(model, "config") else {}
        if getattr(model, "temperature", 1.0) != 1.0:
            extra["temperature"] = float(model.temperature)
        if getattr(model, "decision_weights", None) is not None:
            extra["decision_weights"] = list(model.decision_weights)
        if not hasattr(model, "config") and getattr(model, "tta", False) is True:  # a classifier ensemble's default
            extra["tta"] = True
        if getattr(model, "metadata_model", None) is not None:
            extra["metadata_model"] = model.metadata_model.to_dict()
        return _combine(type(model).__name__, [model_fingerprint(m) for m in members], extra)
    state = {k: v.detach().cpu().contiguous().numpy() for k, v in model.network.state_dict().items()}
    return _hash(model.config.to_dict(), state)


def checkpoint_fingerprint(path_or_name: str | os.PathLike, kind: str = "segmenter") -> str:
    """:func:`model_fingerprint` of a checkpoint, computed from its files without torch."""
    from safetensors.numpy import load_file

    d = resolve_checkpoint(path_or_name, kind)
    if (d / ENSEMBLE_FILE).is_file():
        payload, names = _ensemble_members(d)
        fps = [checkpoint_fingerprint(d / n, kind) for n in names]
        if kind == "segmenter":
            first = _single_payload(d / names[0], kind)["config"]
            extra: dict[str, Any] = {
                "threshold": float(payload["threshold"]) if payload.get("threshold") is not None
                else float(first.get("threshold", 0.5)),
                "tta": payload["tta"] if payload.get("tta") is not None else bool(first.get("tta", False)),
            }
            return _combine("SegmenterEnsemble", fps, extra)
        temperature = float(payload.get("temperature", 1.0))
        extra = {"temperature": temperature} if temperature != 1.0 else {}
        if payload.get("decision_weights") is not None:
            extra["decision_weights"] = [float(v) for v in payload["decision_weights"]]
        if ensemble_tta(payload, d / ENSEMBLE_FILE):
            extra["tta"] = True
        metadata_model = ensemble_metadata_model(payload, d / ENSEMBLE_FILE)
        if metadata_model is not None:
            extra["metadata_model"] = metadata_model.to_dict()
        return _combine("ClassifierEnsemble", fps, extra)
    payload = _single_payload(d, kind)
    from .config import ClassifierConfig, SegmenterConfig

    config_cls = SegmenterConfig if kind == "segmenter" else ClassifierConfig
    try:
        config = config_cls.from_dict(payload["config"]).to_dict()
        arrays = load_file(str(d / WEIGHTS_FILE))
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"Invalid config in '{d / CONFIG_FILE}': {exc}") from exc
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"Cannot read weights '{d / WEIGHTS_FILE}': {exc}. The file may be truncated.") from exc
    return _hash(config, arrays)
