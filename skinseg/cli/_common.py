"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

from pathlib import Path

from ..errors import SkinsegError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3


def resolve_device(name: str) -> str:
    """Map ``auto``/``cpu``/``cuda`` to an available torch device name."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SkinsegError("--device cuda was asked for, but no CUDA GPU is available. Use --device cpu.")
    if name not in ("cpu", "cuda"):
        raise SkinsegError(f"--device must be auto, cpu or cuda; got {name!r}.")
    return name


def has_manifest(src: str) -> bool:
    """True if ``src`` is a manifest CSV or a folder holding ``manifest.csv``."""
    p = Path(src)
    return (p.is_file() and p.suffix.lower() == ".csv") or (p / "manifest.csv").is_file()
