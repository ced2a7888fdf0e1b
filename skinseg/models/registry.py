"""Name -> builder table for segmentation architectures (torch-free).

Builders are registered with :func:`register_segmenter`; the built-in ones (``unet``,
``deeplabv3plus``) are registered by :mod:`skinseg.models.segmenters` when it is
imported. Their names are also known here (:data:`BUILTIN_SEGMENTERS`), so a config
can be validated -- and the ONNX path can run -- without importing torch; asking for a
built-in builder imports that module on demand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .._checks import did_you_mean
from ..errors import ConfigError, UnknownNameError

__all__ = [
    "BUILTIN_SEGMENTERS",
    "register_segmenter",
    "list_segmenters",
    "get_builder",
    "check_segmenter_name",
    "closest_name_error",
]

BUILTIN_SEGMENTERS: tuple[str, ...] = ("deeplabv3plus", "unet")
"""Architectures registered by :mod:`skinseg.models.segmenters` (a test keeps the two in step)."""

_SEGMENTERS: dict[str, Callable[..., Any]] = {}


def register_segmenter(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``builder(config, *, encoder_weights=None)`` under ``name`` (lower-cased).

    The builder returns an smp-style network (one logit channel) for a
    :class:`~skinseg.models.SegmenterConfig`; ``encoder_weights`` is passed on to smp
    (None: random initialisation).
    """
    key = name.lower()

    def decorator(builder: Callable[..., Any]) -> Callable[..., Any]:
        if key in _SEGMENTERS:
            raise ConfigError(f"Segmenter {key!r} is already registered; pass another name.")
        _SEGMENTERS[key] = builder
        return builder

    return decorator


def list_segmenters() -> list[str]:
    """Return the registered architecture names, sorted (e.g. ``['deeplabv3plus', 'unet']``)."""
    return sorted(set(_SEGMENTERS) | set(BUILTIN_SEGMENTERS))


def closest_name_error(kind: str, name: str, valid: list[str]) -> UnknownNameError:
    """Build an :class:`UnknownNameError` listing ``valid`` and suggesting the closest one."""
    return UnknownNameError(f"Unknown {kind} {name!r}. Available: {', '.join(valid)}.{did_you_mean(name, valid)}")


def check_segmenter_name(name: object) -> str:
    """Return ``name`` lower-cased if it is a registered architecture; else raise :class:`UnknownNameError`."""
    if not isinstance(name, str) or name.lower() not in list_segmenters():
        raise closest_name_error("segmenter", str(name), list_segmenters())
    return name.lower()


def get_builder(name: str) -> Callable[..., Any]:
    """Return the builder registered under ``name`` (case-insensitive)."""
    key = check_segmenter_name(name)
    if key not in _SEGMENTERS:  # a built-in whose module is not imported yet
        importlib.import_module(".segmenters", __package__)
    return _SEGMENTERS[key]
