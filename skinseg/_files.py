"""Atomic file writes: the one helper and the one temporary-name scheme of skinseg (private).

Every file skinseg writes (masks, overlays, checkpoints, run journals, reports, ONNX
exports, plots) goes through :func:`atomic_write` or :func:`atomic_output`: the data
goes to a hidden temporary file beside the target, named ``.<target name>.<token>.tmp``
(:func:`temp_path`), is flushed and fsynced, then moved into place with
``os.replace``. A reader never sees a half-written file, a failed write leaves any
existing file untouched and removes its temporary file, and a temporary file left by a
killed process is recognised by :func:`temp_target_name` (the folder runner deletes
those of its own outputs on the next run).

Standard library and :mod:`skinseg.errors` only, so every stage can use it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError, PathIsFolderError

__all__ = [
    "TEMP_SUFFIX", "temp_path", "temp_target_name", "atomic_write", "atomic_output", "write_with", "fsync_dir",
]

TEMP_SUFFIX = ".tmp"
_TOKEN_HEX = 6  # 12 hex digits


def temp_path(target: str | os.PathLike) -> Path:
    """A fresh hidden temporary path beside ``target``: ``.<name>.<12 hex digits>.tmp``."""
    t = Path(target)
    return t.parent / f".{t.name}.{secrets.token_hex(_TOKEN_HEX)}{TEMP_SUFFIX}"


def temp_target_name(name: str) -> str | None:
    """The target file name of a temporary file name made by :func:`temp_path`, else None.

    >>> temp_target_name(".a_mask.png.0123456789ab.tmp")
    'a_mask.png'
    >>> temp_target_name("a_mask.png") is None
    True
    """
    if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
        return None
    base, _, token = name[1 : -len(TEMP_SUFFIX)].rpartition(".")
    if not base or len(token) != 2 * _TOKEN_HEX or any(c not in "0123456789abcdef" for c in token):
        return None
    return base


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _naming(exc: OSError, target: Path) -> OSError:
    """The same kind of OSError, naming ``target`` (not the temporary file) and the cause."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(target))


def _check_target(target: Path, overwrite: bool) -> None:
    if target.is_dir():
        raise PathIsFolderError(f"'{target}' is a directory; pass a file path to write to.")
    if not overwrite and target.exists():
        raise OutputExistsError(f"'{target}' already exists. Pass overwrite=True (--overwrite) to replace "
                                "it.")


@contextmanager
def atomic_output(target: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``target`` through; on success it replaces ``target``.

    For writers that need a path (``torch.save``, ``Figure.savefig``, an ONNX exporter).
    The temporary file is fsynced before the rename and removed if the block raises.
    Parent folders are created.
    """
    t = Path(os.fspath(target))
    _check_target(t, overwrite)
    tmp = temp_path(t)
    try:
        t.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _naming(exc, t) from exc
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, t)
        except OSError as exc:
            raise _naming(exc, t) from exc
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(target: str | os.PathLike, data: bytes | str, *, overwrite: bool = True) -> None:
    """Write ``data`` (bytes, or str as UTF-8) to ``target`` atomically; parent folders are created.

    Raises
    ------
    PathIsFolderError (an IsADirectoryError)
        ``target`` is a folder.
    OutputExistsError (a FileExistsError)
        ``target`` exists and ``overwrite`` is False.
    OSError
        The write failed (full disk, read-only folder, ...); nothing is left behind.
    """
    t = Path(os.fspath(target))
    _check_target(t, overwrite)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = temp_path(t)
    try:
        t.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, like open()
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, t)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, t) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_with(target: str | os.PathLike, write: Callable[[Path], object], *, overwrite: bool = True) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically (see :func:`atomic_output`)."""
    with atomic_output(target, overwrite=overwrite) as tmp:
        write(tmp)
