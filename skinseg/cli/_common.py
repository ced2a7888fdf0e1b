"""Helpers shared by the CLI subcommands."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..errors import SkinsegError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def model_help(kind: str, what: str) -> str:
    """``--model`` / ``--classifier`` help: a checkpoint folder or one of the bundled names (read from the
    package's weights folder, without torch)."""
    from ..models.checkpoint import list_bundled_models

    names = ", ".join(list_bundled_models(kind))
    return f"{what}: a checkpoint folder or a bundled name ({names}; `skinseg models` describes each)"


_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # glibc mallopt parameters (malloc.h)


def tune_allocator() -> bool:
    """Keep a folder run's memory flat: on glibc, at most two malloc arenas and a fixed 1 MiB mmap threshold.

    A folder run frees and reallocates the same large buffers from several threads (readers,
    two backend calls side by side, the writer). glibc's defaults give each thread its own
    arena and raise the mmap threshold after the first large free, so freed buffers stay in
    the heap, fragmented, and the resident size grows with the number of threads; with these
    two settings large buffers go back to the system when freed. This changes where memory
    comes from, never what is computed (outputs are byte-identical). The CLI calls it for its
    own process before any thread starts; other allocators (macOS, musl) are left alone.
    Returns whether the settings took effect.
    """
    import ctypes
    import platform

    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, 2)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20))
    except (OSError, AttributeError):
        return False


def gpu_visible() -> bool:
    """A cheap look for an NVIDIA GPU (device files or nvidia-smi) that does not import torch."""
    import shutil

    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists() or bool(shutil.which("nvidia-smi"))


def resolve_device(name: str) -> str:
    """Map ``auto``/``cpu``/``cuda`` to an available torch device name (torch is imported only if a GPU may exist)."""
    if name == "cpu":
        return "cpu"
    if name == "auto" and not gpu_visible():
        return "cpu"
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


def cache_dir() -> Path:
    """The user cache folder for ONNX exports: $SKINSEG_CACHE_DIR, else $XDG_CACHE_HOME/skinseg, else ~/.cache/skinseg.

    Only the CLI reads environment variables; library functions take ``cache_dir=``. When that
    folder cannot be created or written (a read-only home, a bad $SKINSEG_CACHE_DIR), a
    temporary folder, removed at exit, is used instead, with one warning on stderr: the run
    goes on, only the export is not kept for the next one.
    """
    if os.environ.get("SKINSEG_CACHE_DIR"):
        path = Path(os.environ["SKINSEG_CACHE_DIR"])
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "skinseg"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # nothing is created here: only an export writes into the cache
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return path
    fallback = Path(tempfile.mkdtemp(prefix="skinseg-cache-"))
    atexit.register(shutil.rmtree, fallback, True)
    why = "it is not a writable folder" if existing == path else f"'{existing}' is not a writable folder"
    print(f"warning: the cache folder '{path}' cannot be written ({why}); ONNX exports go to '{fallback}' "
          "for this run only. Set SKINSEG_CACHE_DIR to a writable folder to keep them.", file=sys.stderr)
    return fallback


def where(value: str | None) -> str | None:
    """A path option as a training run records it: the resolved path if it exists, else the text (a name)."""
    if value is None:
        return None
    p = Path(value)
    return str(p.resolve()) if p.exists() else value


def file_sha256(value: str | None) -> str | None:
    """SHA-256 of the file ``value`` names (a weights file), else None (a name such as 'imagenet')."""
    import hashlib

    if value is None or not Path(value).is_file():
        return None
    h = hashlib.sha256()
    with open(value, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def list_sha256(lines: list[str]) -> str:
    """SHA-256 of a list of lines (the training and validation files of a run: which images, which masks)."""
    import hashlib

    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def training_settings(args: Any, **specific: Any) -> dict[str, Any]:
    """The settings of a training run (its fingerprint in run.json): the data sources and splits, then the
    command's own (model, weights, train_config, ...). --threads and --device are not settings."""
    return {"data": [where(s) for s in args.data], "train_split": args.train_split,
            "val_split": args.val_split, **specific}


def recorded_training(payload: dict[str, Any], config_cls: Any) -> dict[str, Any]:
    """What a training run's best/config.json records, as :func:`training_settings` keys (for adopting a run
    folder made before run.json existed)."""
    meta = payload.get("metadata") or {}
    data, val = meta.get("training_data") or {}, meta.get("validation_data") or {}
    found: dict[str, Any] = {"model": config_cls.from_dict(payload["config"]).to_dict()}
    for key, source, name in (("data", data, "sources"), ("train_split", data, "split"),
                              ("train_images", data, "n_images"), ("val_images", val, "n_images"),
                              ("val_split", val, "split"), ("label_map", data, "label_map"),
                              ("class_counts", data, "counts"), ("train_config", meta, "train_config"),
                              ("init_from", meta, "init_from"), ("head_init", meta, "head_init"),
                              ("encoder_weights", meta, "encoder_weights"),
                              ("pretrained", meta, "pretrained")):
        if name in source:
            found[key] = source[name]
    found["data"] = [where(s) for s in found.get("data", [])] or None
    for key in ("init_from", "encoder_weights", "pretrained"):
        if isinstance(found.get(key), str):
            found[key] = where(found[key])
    return {k: v for k, v in found.items() if v is not None or k in ("init_from", "label_map")}


def start_training_run(args: Any, kind: str, settings: dict[str, Any], config_cls: Any) -> None:
    """:func:`skinseg.training.prepare_training_run` of ``args.out`` (refuses other settings), with a note
    when a run folder made before run.json is adopted."""
    from ..training import prepare_training_run

    state = prepare_training_run(args.out, kind=kind, settings=settings, overwrite=args.overwrite,
                                 recorded=lambda payload: recorded_training(payload, config_cls))
    if state == "adopted":
        print(f"note: '{args.out}' was started before skinseg recorded training settings; what its best "
              "checkpoint records agrees with this command, so it resumes and run.json now records the "
              "settings.", file=sys.stderr)


def report_run(result: Any, verb: str, extra: dict[str, Any] | None = None, flagged: str | None = None) -> None:
    """Print a folder run's summary on stderr and its JSON on stdout (shared by segment and classify).

    ``flagged``: what the flagged rows mean (segment: masks to review); their count is printed and in the JSON
    when the flag was decided for some row.
    """
    import json

    print(f"{result.n_ok} of {result.n_images} images {verb} ({result.n_skipped} complete from an earlier run), "
          f"{result.n_failed} failed; results in {result.results_csv}", file=sys.stderr)
    for file, kind, message in result.failed[:10]:
        print(f"  failed: {file}: {kind}: {message}", file=sys.stderr)
    if result.n_failed > 10:
        print(f"  ... and {result.n_failed - 10} more (see {result.results_csv.name})", file=sys.stderr)
    if result.gone:
        print(f"  {len(result.gone)} input(s) of the earlier run are gone; their rows and files were removed: "
              f"{', '.join(result.gone[:5])}{' ...' if len(result.gone) > 5 else ''}", file=sys.stderr)
    if result.not_taken:
        kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in result.not_taken.items())
        print(f"  not taken as images: {kinds}", file=sys.stderr)
    if flagged is not None and result.n_flag_decided:
        shown = ", ".join(result.flagged[:5]) + (" ..." if len(result.flagged) > 5 else "")
        print(f"  {len(result.flagged)} of {result.n_ok} {flagged}{': ' + shown if shown else ''}", file=sys.stderr)
        extra = {**(extra or {}), "needs_review": len(result.flagged)}
    payload = {"images": result.n_images, "ok": result.n_ok, "failed": result.n_failed,
               "processed": result.n_processed, "skipped": result.n_skipped, "gone": len(result.gone),
               "not_taken": result.not_taken, "results": str(result.results_csv), **(extra or {})}
    print(json.dumps(payload))


def add_engine_arguments(p: Any) -> None:
    """``--workers``, ``--engine`` and the Ray engine's options (shared by segment and classify)."""
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local engine: reader threads and writer threads, each (default 2); ray engine: the number of "
        "actors (default one per CPU of the cluster, or per --worker-gpus GPUs)",
    )
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default): this process; ray: a Ray cluster or a local Ray instance (Ray Data)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="with --engine ray: join this Ray cluster (default: $RAY_ADDRESS, as `ray job submit` sets it, "
        "else start a local Ray instance)",
    )
    p.add_argument(
        "--worker-cpus",
        type=float,
        default=None,
        metavar="C",
        help="with --engine ray: CPUs reserved per worker (default 0.5: fractional, so Ray Data's own tasks "
        "still get a core); a worker's ONNX Runtime threads are max(1, int(C)) unless --threads is given",
    )
    p.add_argument(
        "--worker-gpus",
        type=float,
        default=None,
        metavar="G",
        help="with --engine ray: GPUs per worker (default 0; use 1 with --device cuda)",
    )


def ray_engine_options(args: Any) -> Any:
    """The ``RayOptions`` of ``--engine ray`` (Ray's convention: ``$RAY_ADDRESS`` names the cluster when no
    ``--ray-address`` is given); with the local engine, an error for any Ray option given, and None."""
    from ..runs._ray_compat import RAY_INSTALL, ray_installed

    if args.engine != "ray":
        ray_flags = [f for f, v in (("--ray-address", args.ray_address), ("--worker-cpus", args.worker_cpus),
                                    ("--worker-gpus", args.worker_gpus)) if v is not None]
        if ray_flags:
            raise SkinsegError(f"{', '.join(ray_flags)} {'is' if len(ray_flags) == 1 else 'are'} for --engine ray; "
                               "add --engine ray, or leave them out.")
        return None
    if not ray_installed():
        raise SkinsegError(f"--engine ray needs Ray: {RAY_INSTALL}")
    cpus = 0.5 if args.worker_cpus is None else args.worker_cpus
    gpus = 0.0 if args.worker_gpus is None else args.worker_gpus
    if cpus <= 0 or gpus < 0:
        raise SkinsegError("--worker-cpus must be > 0 and --worker-gpus >= 0.")
    from ..runs import RayOptions

    return RayOptions(address=args.ray_address or os.environ.get("RAY_ADDRESS") or None, worker_cpus=cpus,
                      worker_gpus=gpus)


def engine_device(args: Any, options: Any) -> str:
    """The device of ``--device`` (auto: a GPU where torch sees one; with Ray: the workers' GPUs)."""
    if options is None:
        return resolve_device(args.device)
    device = args.device if args.device != "auto" else ("cuda" if options.worker_gpus > 0 else "cpu")
    if device == "cuda" and options.worker_gpus <= 0:
        raise SkinsegError("--device cuda with --engine ray needs GPUs for the workers: add --worker-gpus 1.")
    return device
