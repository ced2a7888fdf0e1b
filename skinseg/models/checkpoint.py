"""Checkpoints: a directory with ``weights.safetensors`` and ``config.json``.

Loading never executes code from a file: weights are safetensors, the config is
JSON, and the model is rebuilt from the config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._imagefile import _write_atomic
from ..errors import CheckpointError, ConfigError

__all__ = ["save_checkpoint", "load_segmenter", "bundled_model_dir", "list_bundled_models", "read_checkpoint_config"]

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
ENSEMBLE_FILE = "ensemble.json"
_BUNDLED_ROOT = Path(__file__).resolve().parent.parent / "weights"
_BUNDLED = {"default": "unet_lite0"}


def list_bundled_models() -> list[str]:
    """Names accepted by :func:`load_segmenter` besides paths."""
    return sorted(set(_BUNDLED) | {p.name for p in _BUNDLED_ROOT.glob("*") if _is_segmenter_dir(p)})


def _is_segmenter_dir(d: Path) -> bool:
    if (d / ENSEMBLE_FILE).is_file():
        return True
    try:
        return json.loads((d / CONFIG_FILE).read_text()).get("format") == "skinseg-segmenter"
    except (OSError, ValueError, AttributeError):
        return False


def bundled_model_dir(name: str) -> Path:
    """Directory of a model shipped inside the package."""
    d = _BUNDLED_ROOT / _BUNDLED.get(name, name)
    if not _is_segmenter_dir(d):
        raise CheckpointError(
            f"The bundled model {name!r} is not installed (looked in '{d}'). Available: "
            f"{', '.join(list_bundled_models()) or 'none'}. Pass a checkpoint directory instead."
        )
    return d


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    _write_atomic(path, data, overwrite=True)


def save_checkpoint(model: Any, path: str | os.PathLike, *, metadata: dict[str, Any] | None = None,
                    weights_dtype: str = "float32") -> Path:
    """Save ``model`` (a :class:`Segmenter`) as ``path/weights.safetensors`` + ``path/config.json``.

    ``metadata`` (JSON-serialisable: training data, scores, ...) is stored beside
    the config. ``weights_dtype="float16"`` stores floating-point tensors at half
    precision (half the file size; :func:`load_segmenter` casts them back to the
    model's float32). Both files are written atomically. Returns the directory.

    A :class:`SegmenterEnsemble` is saved as ``path/ensemble.json`` (threshold,
    TTA default, metadata) and one checkpoint per member (``member0``, ...).
    """
    import torch

    from safetensors.torch import save as save_bytes

    from .. import __version__
    from .segmenters import SegmenterEnsemble

    if isinstance(model, SegmenterEnsemble):
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        names = []
        for i, member in enumerate(model.members):
            save_checkpoint(member, out / f"member{i}", metadata=getattr(member, "metadata", {}),
                            weights_dtype=weights_dtype)
            names.append(f"member{i}")
        payload = {
            "format": "skinseg-segmenter-ensemble",
            "skinseg_version": __version__,
            "members": names,
            "threshold": model.config.threshold,
            "tta": model.config.tta,
            "metadata": metadata or {},
        }
        try:
            text = json.dumps(payload, indent=2)
        except TypeError as exc:
            raise ConfigError(f"`metadata` must be JSON-serialisable: {exc}") from exc
        _atomic_write_bytes(out / ENSEMBLE_FILE, text.encode())
        return out

    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ConfigError("`model` must be a skinseg Segmenter (made by create_segmenter or load_segmenter).")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if weights_dtype not in ("float32", "float16"):
        raise ConfigError(f"`weights_dtype` must be 'float32' or 'float16'; got {weights_dtype!r}.")
    target = torch.float16 if weights_dtype == "float16" else torch.float32
    state = {k: (v.to(target) if v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.network.state_dict().items()}
    payload = {
        "format": "skinseg-segmenter",
        "skinseg_version": __version__,
        "config": config.to_dict(),
        "metadata": metadata or {},
    }
    try:
        text = json.dumps(payload, indent=2, sort_keys=False)
    except TypeError as exc:
        raise ConfigError(f"`metadata` must be JSON-serialisable: {exc}") from exc
    _atomic_write_bytes(out / WEIGHTS_FILE, save_bytes(state))
    _atomic_write_bytes(out / CONFIG_FILE, text.encode())
    return out


def read_checkpoint_config(path_or_name: str | os.PathLike) -> dict[str, Any]:
    """Return the parsed ``config.json`` of a checkpoint directory or bundled name."""
    d = _resolve(path_or_name)
    if (d / ENSEMBLE_FILE).is_file():
        raise CheckpointError(
            f"'{d}' is a segmenter ensemble: its settings are in '{d / ENSEMBLE_FILE}' and each member "
            "(member0, member1, ...) has its own config.json. Load it with skinseg.load_segmenter()."
        )
    try:
        payload = json.loads((d / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"Cannot read '{d / CONFIG_FILE}': {exc}. Re-save the checkpoint.") from exc
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"'{d / CONFIG_FILE}' is not a skinseg checkpoint config (no 'config' entry).")
    return payload


def _resolve(path_or_name: str | os.PathLike) -> Path:
    p = Path(path_or_name)
    if p.is_dir():
        if (p / ENSEMBLE_FILE).is_file():
            return p
        if not (p / CONFIG_FILE).is_file() or not (p / WEIGHTS_FILE).is_file():
            raise CheckpointError(
                f"'{p}' is not a complete checkpoint: it needs {WEIGHTS_FILE} and {CONFIG_FILE}. "
                "Save one with skinseg.save_checkpoint(model, dir)."
            )
        return p
    if isinstance(path_or_name, str) and os.sep not in path_or_name and not p.exists():
        return bundled_model_dir(path_or_name)
    raise CheckpointError(
        f"Checkpoint '{p}' not found. Pass a directory holding {WEIGHTS_FILE} and {CONFIG_FILE}, "
        f"or a bundled name: {', '.join(list_bundled_models()) or 'none'}."
    )


def load_segmenter(path_or_name: str | os.PathLike = "default", *, device: str = "cpu") -> Any:
    """Load a segmenter from a checkpoint directory or a bundled name (``"default"``).

    Returns the model (a :class:`Segmenter`, or a :class:`SegmenterEnsemble` for
    a directory with ``ensemble.json``) in eval mode on ``device``; its
    ``metadata`` attribute holds the stored training data and scores.
    """
    from safetensors.torch import load_file

    from .segmenters import Segmenter, SegmenterConfig, SegmenterEnsemble, build_network, checked_load_state_dict

    d = _resolve(path_or_name)
    if (d / ENSEMBLE_FILE).is_file():
        try:
            ens_payload = json.loads((d / ENSEMBLE_FILE).read_text())
            names = [str(n) for n in ens_payload["members"]]
            threshold, tta = ens_payload.get("threshold"), ens_payload.get("tta")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"Cannot read '{d / ENSEMBLE_FILE}': {exc}. Re-save the ensemble.") from exc
        for n in names:
            if Path(n).name != n or n in ("", ".", ".."):
                raise CheckpointError(f"'{d / ENSEMBLE_FILE}' names member {n!r}, which is not a sub-folder name.")
        members = []
        for n in names:
            member = load_segmenter(d / n, device=device)
            if not isinstance(member, Segmenter):
                raise CheckpointError(f"Ensemble member '{d / n}' is itself an ensemble; nest members flat.")
            members.append(member)
        try:
            ens = SegmenterEnsemble(members, threshold=threshold, tta=tta)
        except ConfigError as exc:
            raise CheckpointError(f"Invalid ensemble '{d}': {exc}") from exc
        ens.metadata = ens_payload.get("metadata", {})
        return ens.to(device).eval()
    payload = read_checkpoint_config(d)
    try:
        config = SegmenterConfig.from_dict(payload["config"])
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"Invalid config in '{d / CONFIG_FILE}': {exc}") from exc
    network = build_network(config)
    try:
        state = load_file(str(d / WEIGHTS_FILE))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"Cannot read weights '{d / WEIGHTS_FILE}': {exc}. The file may be truncated.") from exc
    try:
        checked_load_state_dict(network, state, what=f"Weights in '{d / WEIGHTS_FILE}'")
    except ConfigError as exc:
        raise CheckpointError(f"{exc} The architecture in its config.json does not match the weights.") from exc
    model = Segmenter(network, config)
    model.metadata = payload.get("metadata", {})
    return model.to(device).eval()
