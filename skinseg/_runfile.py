"""``run.json``, the settings file of every folder skinseg runs in (private; standard library only).

Folder runs (``segment``, ``classify``: :mod:`skinseg.runs.journal`) and training runs
(``train``, ``train-classifier``: :mod:`skinseg.training`) record in ``OUT/run.json`` a
``format`` (``skinseg-<kind>-run``), the skinseg version and the ``settings`` that
determine their results; a rerun with other settings is refused with the changes named
(:func:`settings_changes`). The image listing uses :func:`is_run_file` to recognise a
folder that holds such a run, so an earlier run's outputs are not taken for inputs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import __version__
from ._files import atomic_write

__all__ = ["RUN_FILE", "run_format", "read_run_file", "is_run_file", "holds_run", "settings_changes",
           "write_run_file"]

RUN_FILE = "run.json"
_FORMAT = re.compile(r"^skinseg-[a-z-]+-run$")


def run_format(kind: str) -> str:
    """The ``format`` of a ``kind`` run's run.json, e.g. ``skinseg-segment-run``."""
    return f"skinseg-{kind}-run"


def read_run_file(path: str | Path) -> dict[str, Any] | None:
    """The payload of a skinseg run.json (a dict with a skinseg run ``format``), else None."""
    try:
        payload = json.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    return payload if is_run_payload(payload) else None


def is_run_payload(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("format"), str) and bool(
        _FORMAT.match(payload["format"]))


def is_run_file(data: bytes) -> bool:
    """True if ``data`` (a ``run.json``'s bytes) is the settings file of a skinseg run of any kind."""
    try:
        return is_run_payload(json.loads(data))
    except ValueError:
        return False


def holds_run(folder: str | Path) -> bool:
    """True if ``folder`` holds the run.json of a skinseg run (:func:`is_run_file`)."""
    try:
        return is_run_file((Path(folder) / RUN_FILE).read_bytes())
    except OSError:
        return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 90 else text[:60] + "..." + text[-20:]


def settings_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str:
    """``"key: old -> new, ..."`` for every setting that differs; nested settings as ``key.sub`` (long values
    shortened).

    >>> settings_changes({"lr": 0.001, "cfg": {"seed": 0, "loss": "dice"}}, {"lr": 0.001, "cfg": {"seed": 1}})
    "cfg.seed: 0 -> 1, cfg.loss: 'dice' -> None"
    """
    parts = []
    for k in dict.fromkeys([*new, *old]):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            parts.append(settings_changes(a, b, f"{prefix}{k}."))
        else:
            parts.append(f"{prefix}{k}: {_short(a)} -> {_short(b)}")
    return ", ".join(parts)


def write_run_file(path: str | Path, kind: str, version: int, settings: dict[str, Any], **extra: Any) -> None:
    """Write run.json atomically: format, format_version, skinseg_version, settings, then ``extra``."""
    payload = {"format": run_format(kind), "format_version": version, "skinseg_version": __version__,
               "settings": settings, **extra}
    atomic_write(path, json.dumps(payload, indent=2) + "\n")
