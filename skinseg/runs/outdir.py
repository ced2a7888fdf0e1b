"""Output-folder rules shared by every command that writes a folder (``segment``, ``classify``).

- :func:`check_output_dir`: the output folder is never the input folder or inside it.
- :class:`OutputLock`: one run at a time per output folder (an ``fcntl`` lock on
  ``OUT/.skinseg.lock``; the kernel releases it when the process ends, so a crash never
  leaves a stale lock; the file names the holder for the error message).
- :func:`remove_stale_temps`: temporary files (``.<name>.<token>.tmp``, see
  :mod:`skinseg._files`) that a killed run left beside its outputs; only under the lock.
- :func:`check_foreign_outputs`: output paths taken by files that no skinseg run there wrote
  (an expert's ``*_segmentation.png``, another program's ``results.csv``): refused, with or
  without ``overwrite``; skinseg replaces only its own files.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._files import temp_target_name
from .._runfile import read_run_file, run_format
from ..errors import ConfigError, OutputExistsError, PathNotFolderError, PathNotFoundError

__all__ = [
    "check_output_dir", "OutputLock", "OutputLockedError", "remove_stale_temps", "find_existing",
    "prepare_output_folder", "check_foreign_outputs", "LOCK_FILE",
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


def check_foreign_outputs(journal: Any, rels: Iterable[str], exists: Callable[[str], bool],
                          show: Callable[[str], str], location: str, *, overwrite: bool) -> None:
    """Refuse output paths that hold files no skinseg run wrote (:class:`~skinseg.errors.OutputExistsError`).

    A file is skinseg's when the output folder holds a run.json of this kind of run and
    (for an output file) its journal lists it. On a resume (no ``overwrite``, run.json
    present) the outputs of unfinished inputs may be replaced: a run killed between writing
    an image's files and its journal line leaves such files. Otherwise, and always with
    ``overwrite``, every other existing file at an output path is refused before anything is
    removed. ``exists(rel)`` and ``show(rel)`` look a path up and name it; ``location`` names
    the folder. The run files (results CSV, journal, timings) count as outputs too.
    """
    run_file = Path(journal.run_file)
    payload = read_run_file(run_file) if run_file.exists() else None
    fmt = run_format(journal.kind)
    if run_file.exists() and (payload is None or payload["format"] != fmt):
        what = f"a {payload['format']} run" if payload else f"a {run_file.name} that skinseg did not write"
        raise ConfigError(f"'{location}' holds {what}, not a {fmt}; skinseg does not replace it. Choose "
                          "another output folder.")
    if payload is not None and not overwrite:
        return  # a resume: skinseg's folder
    listed = journal.listed_outputs() if payload is not None else set()
    run_files = [] if payload is not None else [journal.results.name, journal.journal_file.name,
                                                journal.timings_file.name]
    foreign = [show(n) for n in run_files if (run_file.parent / n).exists()]
    foreign += [show(rel) for rel in dict.fromkeys(rels) if rel not in listed and exists(rel)]
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputExistsError(
            f"'{foreign[0]}'{more} already exist{'s' if not more else ''} in '{location}', and no skinseg "
            f"run there wrote {'it' if not more else 'them'}: skinseg never replaces files it did not write "
            f"({'not even with --overwrite' if overwrite else '--overwrite does not either'}). Move "
            f"{'it' if not more else 'them'} elsewhere, or choose another output folder."
        )


def prepare_output_folder(journal: Any, out: Path, outputs: Iterable[Iterable[str]], *, overwrite: bool) -> None:
    """Get ``out`` ready for a run, under the lock: remove stale temps, refuse foreign files, start the journal.

    ``outputs`` holds, per input, the paths (relative to ``out``) it will write. A file at one
    of them that no skinseg run wrote is refused (:func:`check_foreign_outputs`).
    """
    rels = [rel for files in outputs for rel in files]
    run_files = {journal.results.name, journal.run_file.name, journal.journal_file.name, journal.timings_file.name}
    expected: dict[Path, set[str]] = {out: set(run_files)}
    for rel in rels:
        expected.setdefault((out / rel).parent, set()).add(Path(rel).name)
    remove_stale_temps(expected)
    check_foreign_outputs(journal, rels, lambda rel: (out / rel).exists(), lambda rel: str(out / rel),
                          str(out), overwrite=overwrite)
    journal.start(overwrite=overwrite)
