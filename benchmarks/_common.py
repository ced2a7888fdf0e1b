"""What the benchmark scripts share: the dev-set folders, reading, PSNR and the banner.

- :func:`data_dir`: a dev-set folder. ``SKINSEG_DATA_DIR`` names the ``lesions``
  folder (the one holding its ``manifest.csv``, as for the tests); the other dev sets
  (``lesion-classes``) are its siblings. Default: ``<repo>/../shared/data/<name>``.
- :func:`manifest_items`: the items of some splits of one or more dev-set folders
  (:func:`skinseg.data.read_manifest`).
- :func:`read_rgb`: an image file as (H, W, 3) uint8 RGB (:func:`skinseg.read_image`).
- :func:`psnr`: peak signal-to-noise ratio of two uint8 images, optionally on a region.
- :func:`processes`: every process's parent, CPU seconds so far and name, from ``/proc``.
- :func:`banner`: the command that reproduces the run, the machine and the library
  versions; :func:`start_choice_run` adds the torch threads and a warning when a
  choice is scored on ``test``.

The scripts import this module as ``_common`` (the script's own folder is on
``sys.path`` when it is run as ``python benchmarks/<script>.py``). Nothing here does any
work at import time, and numpy, OpenCV, torch and skinseg are imported only inside the
functions that need them.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ENV = "SKINSEG_DATA_DIR"
"""Environment variable naming the ``lesions`` dev-set folder (the one holding its manifest.csv)."""

DATA_HELP = f"default: ${DATA_ENV} (the 'lesions' folder; other dev sets are its siblings) or ../shared/data"


def data_dir(name: str = "lesions") -> Path:
    """The dev-set folder ``name`` (``"lesions"`` or ``"lesion-classes"``), checked to hold a manifest.csv.

    ``SKINSEG_DATA_DIR`` names the ``lesions`` folder; other names are its siblings.
    Without it: ``<repo>/../shared/data/<name>``.

    Raises
    ------
    SystemExit
        The folder has no ``manifest.csv`` (the message says where it looked and how to point elsewhere).
    """
    env = os.environ.get(DATA_ENV)
    if env:
        lesions = Path(env).expanduser()
        path = lesions if name == "lesions" else lesions.parent / name
        origin = f"from {DATA_ENV}={env}" + ("" if name == "lesions" else f" (its sibling '{name}')")
    else:
        path = REPO_ROOT.parent / "shared" / "data" / name
        origin = f"the default, {DATA_ENV} being unset"
    if not (path / "manifest.csv").is_file():
        raise SystemExit(
            f"error: dev set '{name}' not found: no manifest.csv in {path} ({origin}). Set {DATA_ENV} to the "
            "'lesions' folder that holds manifest.csv (the other dev sets are its siblings), or pass --data."
        )
    return path


def manifest_items(
    folders: str | os.PathLike | Sequence[str | os.PathLike],
    splits: str | Iterable[str] | None,
    *,
    label_column: str | None = None,
) -> list[Any]:
    """The :class:`skinseg.data.ManifestItem` (image, mask, label, id) of ``splits`` in one or more folders.

    Items come folder by folder, in manifest order. A missing manifest, a missing column
    or a split without images exits with the library's message.
    """
    from skinseg.data import read_manifest
    from skinseg.errors import ConfigError

    if isinstance(folders, str | os.PathLike):
        folders = [folders]
    wanted = splits if splits is None or isinstance(splits, str) else list(splits)
    items: list[Any] = []
    for folder in folders:
        try:
            items += read_manifest(folder, wanted, label_column=label_column)
        except (FileNotFoundError, ConfigError) as err:
            raise SystemExit(f"error: {err}") from None
    return items


def link_images(paths: Iterable[Path], folder: Path) -> Path:
    """``folder`` (created) holding a symbolic link to each of ``paths`` under its own name: a benchmark's input
    folder without copying the images."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        os.symlink(Path(p).resolve(), folder / Path(p).name)
    return folder


def read_rgb(path: str | os.PathLike) -> Any:
    """(H, W, 3) uint8 RGB of a file (:func:`skinseg.read_image`); exits with a message if unreadable."""
    import skinseg as ss

    try:
        return ss.read_image(path)
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: cannot read {path}: {err}") from None


def psnr(a: Any, b: Any, region: Any = None) -> float:
    """PSNR in dB of two uint8 images (peak 255), over the whole image or the (H, W) bool ``region``.

    The squared error is averaged over every channel of every pixel considered; the MSE is
    floored at 1e-10, so identical images give 10 log10(255^2 / 1e-10) = 148.1 dB.
    """
    import numpy as np

    d = (np.asarray(a).astype(np.float64) - np.asarray(b).astype(np.float64)) ** 2
    mse = d[region].mean() if region is not None else d.mean()
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def command_line(argv: Sequence[str] | None = None) -> str:
    """``python benchmarks/<script>.py <args>``: the command that reproduces this run, from the repo root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]) if argv else Path("?")
    try:
        script = script.resolve().relative_to(REPO_ROOT)
    except ValueError:
        pass
    return "python " + shlex.join([script.as_posix(), *argv[1:]])


def _version(module: str) -> str:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return f"{module} (not installed)"
    text = f"{module} {getattr(mod, '__version__', '?')}"
    threads = mod.get_num_threads() if module == "torch" else mod.getNumThreads() if module == "cv2" else None
    if threads is not None:
        text += f" ({threads} thread{'' if threads == 1 else 's'})"
    return text


def banner(*, libraries: Iterable[str] = ("numpy",), split: str | None = None, choosing: bool = False,
           argv: Sequence[str] | None = None) -> None:
    """Print the reproducing command, the machine and the library versions (stdout).

    ``libraries``: modules whose version is printed after Python's and skinseg's (torch
    and cv2 with their thread counts; listing one imports it). With ``choosing``, a run on
    the ``test`` split gets a warning on stderr: choices are made on ``val``, ``test``
    only reports the chosen one.
    """
    import platform

    print(f"command: {command_line(argv)}")
    try:
        load = f"load average {os.getloadavg()[0]:.2f}"
    except OSError:  # pragma: no cover - not on this platform
        load = "load average unknown"
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {load} "
          "(shared machines: compare only numbers from one run)")
    versions = [f"python {platform.python_version()}", _version("skinseg")]
    versions += [_version(m) for m in dict.fromkeys(libraries) if m != "skinseg"]
    print("versions: " + ", ".join(versions), flush=True)
    if choosing and split == "test":
        print("note: choices must be made on 'val'; 'test' only reports the chosen one.", file=sys.stderr)


def start_choice_run(split: str, threads: int | None, *,
                     libraries: Iterable[str] = ("numpy", "torch")) -> None:
    """For scripts that choose a setting: set the torch threads, then :func:`banner` warning on ``test``."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    banner(libraries=libraries, split=split, choosing=True)


def processes() -> dict[int, tuple[int, float, str]]:
    """``{pid: (parent pid, CPU seconds so far, command name)}`` of every process (from /proc).

    The name is the kernel's command name, except for Ray's processes: a Ray worker's
    ``ray::<Actor>`` title and a Python daemon's script name (``dashboard.py``) from its
    command line.
    """
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, tail = f.read().rsplit(")", 1)
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").split()
        except (OSError, ValueError):
            continue
        fields = tail.split()
        name = head.split("(", 1)[-1]
        if cmd and cmd[0].startswith("ray::"):
            name = cmd[0]
        elif name.startswith("python") and len(cmd) > 1:
            script = next((a for a in cmd[1:] if not a.startswith("-")), cmd[-1])
            name = Path(script).name
        found[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, name)
    return found
