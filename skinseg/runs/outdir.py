"""Output-folder rules shared by every command that writes a folder (``segment``, ``classify``).

- :func:`check_output_dir`: the output folder is never the input folder or inside it.
- :class:`OutputLock`: one run at a time per output folder (an ``fcntl`` lock on
  ``OUT/.skinseg.lock``; the kernel releases it when the process ends, so a crash never
  leaves a stale lock; the file names the holder for the error message).
- :func:`remove_stale_temps`: temporary files (``.<name>.<token>.tmp``, see
  :mod:`skinseg._files`) that a killed run left beside its outputs; only under the lock.
- :func:`find_existing`: outputs that exist although no run journal lists them (refused
  without ``overwrite``: they may be somebody else's files).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._files import temp_target_name
from ..errors import ConfigError, PathNotFolderError, PathNotFoundError

__all__ = [
    "check_output_dir", "OutputLock", "OutputLockedError", "remove_stale_temps", "find_existing",
    "prepare_output_folder", "LOCK_FILE",
]

LOCK_FILE = ".skinseg.lock"


class OutputLockedError(ConfigError):
    """Another skinseg run holds the output folder."""


def check_output_dir(in_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Return (in_dir, out_dir) as Paths; refuse an ``out_dir`` equal to or inside ``in_dir``.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        ``in_dir`` is missing or not a folder.
    ConfigError
        ``out_dir`` is ``in_dir`` or lies inside it (inputs are never written to), or is a file.
    """
    src, dst = Path(in_dir), Path(out_dir)
    if not src.exists():
        raise PathNotFoundError(f"Input folder '{src}' does not exist. Check the path.")
    if not src.is_dir():
        raise PathNotFolderError(f"Input '{src}' is a file, not a folder. Pass the folder that holds it.")
    if dst.exists() and not dst.is_dir():
        raise ConfigError(f"`out_dir` '{dst}' is a file. Pass a folder for the outputs.")
    s, d = src.resolve(), dst.resolve()
    if d == s or s in d.parents:
        raise ConfigError(
            f"`out_dir` must not be the input folder or inside it (inputs are never modified); got "
            f"'{dst}' for input '{src}'. Choose another output folder, e.g. '{s.parent / (s.name + '_seg')}'."
        )
    return src, dst


class OutputLock:
    """Exclusive lock on an output folder for the length of a run (a context manager).

    Parameters
    ----------
    out : Path
        The output folder (created if missing).
    wait : bool
        Wait for the other run to finish instead of raising :class:`OutputLockedError`.
    command : str, optional
        What to write into the lock file for the other run's error message.
    """

    def __init__(self, out: Path, *, wait: bool = False, command: str | None = None) -> None:
        self.path = Path(out) / LOCK_FILE
        self.wait = wait
        self.command = command if command is not None else " ".join(sys.argv)
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return (f"process {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                    f"{info.get('command')}")
        except (OSError, ValueError, AttributeError):
            return "another process"

    def acquire(self) -> OutputLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.wait:
                    raise OutputLockedError(
                        f"'{self.path.parent}' is in use by another skinseg run ({self._holder()}). Wait for it to "
                        "finish, pass --wait (wait=True) to wait for it, or choose another output folder."
                    ) from None
                fcntl.flock(fd, fcntl.LOCK_EX)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:  # pragma: no cover - e.g. a read-only folder by now
                pass
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def remove_stale_temps(expected: dict[Path, set[str]]) -> int:
    """Delete temporary files of the given targets (``folder -> file names``) left by a killed run.

    Call it only while holding the :class:`OutputLock`: no other run can then be writing
    them. Returns how many files were removed.
    """
    removed = 0
    for folder, names in expected.items():
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            if temp_target_name(tmp.name) in names and tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed += 1
    return removed


def find_existing(paths: Iterable[Path]) -> Path | None:
    """The first of ``paths`` that exists, else None."""
    return next((p for p in paths if p.exists()), None)


def prepare_output_folder(journal: Any, out: Path, outputs: Iterable[Iterable[str]], *, overwrite: bool) -> None:
    """Get ``out`` ready for a run, under the lock: remove stale temps, refuse foreign files, start the journal.

    ``outputs`` holds, per input, the paths (relative to ``out``) it will write. Without
    ``overwrite`` and without a journal of an earlier run, an existing output file is
    refused (:class:`FileExistsError`): it is not skinseg's to replace.
    """
    rels = [rel for files in outputs for rel in files]
    run_files = {journal.results.name, journal.run_file.name, journal.journal_file.name, journal.timings_file.name}
    expected: dict[Path, set[str]] = {out: set(run_files)}
    for rel in rels:
        expected.setdefault((out / rel).parent, set()).add(Path(rel).name)
    remove_stale_temps(expected)
    if not overwrite and not journal.has_journal():
        clash = find_existing(out / rel for rel in rels)
        if clash is not None:
            raise FileExistsError(
                f"'{clash}' already exists and '{out}' holds no journal of a run to resume. Pass "
                "--overwrite (overwrite=True) to replace existing outputs, or choose another output folder."
            )
    journal.start(overwrite=overwrite)
