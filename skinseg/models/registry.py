"""Name -> builder table for segmentation architectures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._checks import did_you_mean
from ..errors import UnknownNameError

__all__ = ["register_segmenter", "list_segmenters", "get_builder", "closest_name_error"]

_SEGMENTERS: dict[str, Callable[..., Any]] = {}


def register_segmenter(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``builder`` under ``name`` (lower-cased)."""
    key = name.lower()

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if key in _SEGMENTERS:
            raise ValueError(f"segmenter {key!r} is already registered")
        _SEGMENTERS[key] = builder
        return builder

    return decorator


def list_segmenters() -> list[str]:
    """Return the registered architecture names, sorted (e.g. ``['deeplabv3plus', 'unet']``)."""
    return sorted(_SEGMENTERS)


def closest_name_error(kind: str, name: str, valid: list[str]) -> UnknownNameError:
    """Build an :class:`UnknownNameError` listing ``valid`` and suggesting the closest one."""
    return UnknownNameError(f"Unknown {kind} {name!r}. Available: {', '.join(valid)}.{did_you_mean(name, valid)}")


def get_builder(name: str) -> Callable[..., Any]:
    """Return the builder registered under ``name`` (case-insensitive)."""
    if not isinstance(name, str) or name.lower() not in _SEGMENTERS:
        raise closest_name_error("segmenter", name, list_segmenters())
    return _SEGMENTERS[name.lower()]
