"""Where a run reads its images and writes its outputs: a local folder, or a URI of any filesystem pyarrow supports.

- :func:`is_uri`, :func:`redact_uri`: a location string is a URI (``s3://``, ``gs://``,
  ``abfs://``, ``hdfs://``, ``local://``, ``file://``, ...) or a local path; a URI without
  its credentials (``user:secret@`` and secret-looking query parameters), for messages
  and run.json.
- :func:`open_store`: a :class:`LocalStore` (plain files through :mod:`os`, as the local
  engine writes them; pyarrow is not needed) or an :class:`ArrowStore` (any
  ``pyarrow.fs`` filesystem). Both are picklable, so a Ray worker gets the same store.
- :class:`ArrowStore` lists images by the rules of :func:`skinseg.io.scan_images`, reads
  bytes (decoded by :func:`skinseg.io.read_image_bytes`, the local decoder), writes
  atomically and stats files for the run journal (size, modification time).
- :func:`prepare_store_output`, :class:`ListedOutputFiles`, :class:`StagedRunFiles`: the
  output-folder rules of :mod:`skinseg.runs.outdir` for a URI output, whose run files
  (run.json, journal.jsonl, timings.csv, results.csv) are kept in a local staging folder
  and uploaded (pulled back on resume).

**Atomic writes.** On filesystems with a rename (local, HDFS, Azure with a hierarchical
namespace, ...) a file is written to ``.<name>.<token>.tmp`` beside its target and moved
into place (see :mod:`skinseg._files`); on object stores (S3, GCS) a single PUT is
already atomic (an object appears whole or not at all), so the file is written directly.

**Credentials** follow pyarrow's conventions (``AWS_*`` environment variables,
``~/.aws``, instance roles, ``GOOGLE_APPLICATION_CREDENTIALS``, ...). A store opened from
a URI resolves its filesystem again in each process, so every Ray worker uses its own
environment's credentials; a filesystem object passed in (``filesystem=``) travels pickled
to the workers, as with Ray Data's own ``filesystem=`` arguments. skinseg never writes
credentials into run.json, messages or logs: locations are shown by :func:`redact_uri`.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .._files import atomic_write, temp_path, temp_target_name
from ..errors import ConfigError, PathNotFolderError, PathNotFoundError
from ..io import DEFAULT_MAX_PIXELS, read_file, read_image_bytes, scan_entries, scan_images
from .journal import JOURNAL_FILE, RUN_FILE, TIMINGS_FILE, input_stat
from .outdir import check_foreign_outputs

__all__ = [
    "is_uri", "redact_uri", "open_store", "LocalStore", "ArrowStore", "ListedOutputFiles", "StagedRunFiles",
    "prepare_store_output", "remove_store_temps", "check_store_locations", "PYARROW_MISSING",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_SECRET_WORDS = ("key", "secret", "token", "password", "passwd", "credential", "signature", "sig", "sas")
_DIRECT_PUT = {"s3", "gcs"}  # object stores: one PUT is atomic, and they have no rename
PYARROW_MISSING = ("URIs and filesystem objects need pyarrow, which Ray Data installs: "
                   'pip install "skinseg-dermoscopy[ray]".')


def is_uri(location: Any) -> bool:
    """True if ``location`` is a string of the form ``scheme://...`` (not a local path)."""
    return isinstance(location, str) and _SCHEME.match(location) is not None


def redact_uri(uri: str) -> str:
    """``uri`` without credentials: no ``user:password@``, no query parameter whose name looks secret.

    >>> redact_uri("s3://AKIA:s3cret@bucket/in?region=eu-west-1&secret_key=x")
    's3://bucket/in?region=eu-west-1'
    """
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    netloc = parts.netloc.rpartition("@")[2]
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not any(w in k.lower() for w in _SECRET_WORDS)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


def _pyarrow_fs() -> Any:
    try:
        import pyarrow.fs as pafs
    except ImportError as exc:
        raise ConfigError(PYARROW_MISSING) from exc
    return pafs


class LocalStore:
    """A local folder (plain files, as the local engine reads and writes them; no pyarrow).

    A relative folder stays relative to the working directory it was opened in, also in a
    process whose working directory is another (a Ray worker on another node of a shared
    filesystem).
    """

    local = True

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.location = str(self.root.resolve())
        self.cwd = os.getcwd()

    def display(self, rel: str) -> str:
        """The path of ``rel`` as messages name it (the input path as given, like the local engine)."""
        return str(self.root / rel)

    def _path(self, rel: str) -> str:
        path = self.root / rel
        return str(path if path.is_absolute() or os.getcwd() == self.cwd else Path(self.cwd) / path)

    def check_folder(self, what: str) -> None:
        """FileNotFoundError / NotADirectoryError if the folder is missing or a file."""
        if not self.root.exists():
            raise PathNotFoundError(f"{what} '{self.root}' does not exist. Check the path.")
        if not self.root.is_dir():
            raise PathNotFolderError(f"{what} '{self.root}' is a file, not a folder. Pass the folder that "
                                     "holds it.")

    def scan_images(self, *, recursive: bool = False, exclude_suffix: str | None = None,
                    skip_runs: bool = False) -> tuple[list[tuple[str, list[int] | None]], dict[str, int]]:
        """:func:`skinseg.io.scan_images` of the folder: ``([(relative path, None), ...], {reason: count})``
        (a local file is stat'ed when the journal asks, see :meth:`stat`)."""
        scan = scan_images(self.root, recursive=recursive, exclude_suffix=exclude_suffix, skip_runs=skip_runs)
        return [(p.relative_to(self.root).as_posix(), None) for p in scan.images], scan.skipped_counts()

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of ``rel``, read once (:func:`skinseg.io.read_file`: its errors name the file)."""
        return read_file(self._path(rel))

    def read_image(self, rel: str, *, convert: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
        """:func:`skinseg.io.read_image` of ``rel``."""
        return read_image_bytes(self.read_bytes(rel), name=self._path(rel), convert=convert, max_pixels=max_pixels)

    def stat(self, rel: str) -> list[int]:
        return input_stat(self._path(rel))

    def write_bytes(self, rel: str, data: bytes) -> None:
        atomic_write(self._path(rel), data)

    def __repr__(self) -> str:
        return f"LocalStore({self.location!r})"


class ArrowStore:
    """A folder of a ``pyarrow.fs`` filesystem, given by a URI or by (filesystem, path).

    Parameters
    ----------
    uri : str, optional
        ``scheme://...``; the filesystem is resolved from it in every process (workers
        use their own credentials).
    filesystem, path : optional
        A ``pyarrow.fs.FileSystem`` and a path on it (instead of ``uri``).
    """

    local = False

    def __init__(self, uri: str | None = None, *, filesystem: Any = None, path: str | None = None) -> None:
        if (uri is None) == (filesystem is None):
            raise ConfigError("Pass either a URI or a pyarrow filesystem with a path.")
        self._uri, self._fs = uri, filesystem
        if uri is not None:
            self._fs, path = _pyarrow_fs().FileSystem.from_uri(uri)
        self.root = str(path).rstrip("/") or "/"
        self.kind = str(self._fs.type_name)
        if self.kind == "local":
            self.location = str(Path(self.root).resolve())
        elif uri is not None:
            self.location = redact_uri(uri).rstrip("/")
        else:
            self.location = f"{self.kind}://{self.root.lstrip('/')}"

    # pickling: a URI store resolves its filesystem again on the other side (its own credentials)
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._uri is not None:
            state["_fs"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._fs is None:
            self._fs = _pyarrow_fs().FileSystem.from_uri(self._uri)[0]

    @property
    def filesystem(self) -> Any:
        return self._fs

    @property
    def direct_put(self) -> bool:
        """True on object stores, where a file is written with one (atomic) PUT instead of temp + move."""
        return self.kind in _DIRECT_PUT

    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel) if rel else self.root

    def display(self, rel: str) -> str:
        """``rel`` as messages name it: its URI (without credentials and query) or local path."""
        base = self.location.partition("?")[0]
        return f"{base}/{rel}" if rel else base

    def __repr__(self) -> str:
        return f"ArrowStore({self.location!r})"

    # ------------------------------------------------------------------ reading

    def info(self) -> Any:
        return self._fs.get_file_info(self.root)

    def check_folder(self, what: str) -> None:
        """FileNotFoundError / NotADirectoryError if the root is missing or a file."""
        pafs = _pyarrow_fs()
        kind = self.info().type
        if kind == pafs.FileType.NotFound:
            raise PathNotFoundError(f"{what} '{self.location}' does not exist. Check the path.")
        if kind != pafs.FileType.Directory:
            raise PathNotFolderError(f"{what} '{self.location}' is a file, not a folder. Pass the folder "
                                     "that holds it.")

    def _infos(self, recursive: bool) -> list[Any]:
        pafs = _pyarrow_fs()
        return self._fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True, recursive=recursive))

    def _rel(self, path: str) -> str:
        root = self.root.rstrip("/") + "/" if self.root != "/" else "/"
        return path[len(root):] if path.startswith(root) else path.lstrip("/")

    def scan_images(self, *, recursive: bool = False, exclude_suffix: str | None = None,
                    skip_runs: bool = False) -> tuple[list[tuple[str, list[int]]], dict[str, int]]:
        """The images under the root by the rules of :func:`skinseg.io.scan_images` (:func:`skinseg.io.scan_entries`
        over one listing), sorted; with ``skip_runs`` folders holding an earlier skinseg run are not searched.

        Returns ``([(relative path, [size, mtime_ns]), ...], {reason: count of entries not taken})``.
        """
        pafs = _pyarrow_fs()
        self.check_folder("Input folder")
        entries: list[tuple[str, str]] = []
        stats: dict[str, list[int]] = {}
        for info in self._infos(recursive):
            rel = self._rel(info.path)
            if not rel:
                continue
            kind = ("dir" if info.type == pafs.FileType.Directory else "file" if info.type == pafs.FileType.File
                    else "special")
            entries.append((rel, kind))
            if kind == "file":
                stats[rel] = [int(info.size or 0), int(info.mtime_ns if info.mtime_ns is not None else -1)]
        images, skipped = scan_entries(entries, recursive=recursive, exclude_suffix=exclude_suffix,
                                       skip_runs=self.read_bytes if skip_runs else None)
        return [(rel, stats[rel]) for rel in images], {k: len(v) for k, v in skipped.items()}

    def listing(self) -> dict[str, list[int]]:
        """Every file under the root (recursively): ``{relative path: [size, mtime_ns]}``."""
        pafs = _pyarrow_fs()
        return {self._rel(i.path): [int(i.size or 0), int(i.mtime_ns if i.mtime_ns is not None else -1)]
                for i in self._infos(True) if i.type == pafs.FileType.File}

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of ``rel``; FileNotFoundError naming it if it is gone."""
        try:
            with self._fs.open_input_stream(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            raise PathNotFoundError(f"Image file '{self.display(rel)}' does not exist. Check the "
                                    "path.") from None

    def read_image(self, rel: str, *, convert: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
        """:func:`skinseg.io.read_image` of ``rel``: the same decoder and errors, naming its URI."""
        return read_image_bytes(self.read_bytes(rel), name=self.display(rel), convert=convert, max_pixels=max_pixels)

    def exists(self, rel: str) -> bool:
        return self._fs.get_file_info(self.path(rel)).type == _pyarrow_fs().FileType.File

    # ------------------------------------------------------------------ writing

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``rel`` atomically (temporary file + move, or one PUT on an object store)."""
        target = self.path(rel)
        parent = posixpath.dirname(target)
        try:
            if parent and not self.direct_put:
                self._fs.create_dir(parent, recursive=True)
            if self.direct_put:
                with self._fs.open_output_stream(target) as f:
                    f.write(data)
                return
            tmp = str(temp_path(target))
            try:
                with self._fs.open_output_stream(tmp) as f:
                    f.write(data)
                self._fs.move(tmp, target)
            except BaseException:
                self._remove_quietly(tmp)
                raise
        except OSError as exc:
            raise type(exc)(f"Cannot write '{self.display(rel)}': {exc}") from None

    def _remove_quietly(self, path: str) -> None:
        try:
            self._fs.delete_file(path)
        except OSError:
            pass

    def remove(self, rel: str) -> None:
        """Remove ``rel`` if it exists (never anything outside the root)."""
        norm = posixpath.normpath(rel)
        if norm.startswith("..") or posixpath.isabs(norm):
            return
        self._remove_quietly(self.path(norm))

    def download(self, rel: str, target: Path) -> bool:
        """Copy ``rel`` to the local file ``target``; False if it does not exist."""
        try:
            with self._fs.open_input_stream(self.path(rel)) as f:
                data = f.read()
        except FileNotFoundError:
            return False
        atomic_write(target, data)
        return True


def open_store(location: str | os.PathLike, *, filesystem: Any = None) -> LocalStore | ArrowStore:
    """A store for a local folder, a URI, or a path on ``filesystem`` (a ``pyarrow.fs.FileSystem``)."""
    if filesystem is not None:
        pafs = _pyarrow_fs()
        if not isinstance(filesystem, pafs.FileSystem):
            raise ConfigError(f"`filesystem` must be a pyarrow.fs.FileSystem; got {type(filesystem).__name__}.")
        if is_uri(location):
            raise ConfigError(f"With a `filesystem`, pass paths on it, not URIs; got '{redact_uri(str(location))}'.")
        return ArrowStore(filesystem=filesystem, path=os.fspath(location))
    if is_uri(location):
        return ArrowStore(str(location))
    return LocalStore(location)


def _fs_kind(store: LocalStore | ArrowStore) -> str:
    return "local" if isinstance(store, LocalStore) else store.kind


def check_store_locations(src: LocalStore | ArrowStore, dst: LocalStore | ArrowStore) -> None:
    """The output is never the input folder or inside it (same rule as :func:`skinseg.runs.check_output_dir`)."""
    s, d = src.location.partition("?")[0], dst.location.partition("?")[0]
    if _fs_kind(src) == _fs_kind(dst) and (d == s or d.startswith(s.rstrip("/") + "/")):
        raise ConfigError(
            f"`out_dir` must not be the input folder or inside it (inputs are never modified); got '{d}' for input "
            f"'{s}'. Choose another output folder."
        )


class ListedOutputFiles:
    """:class:`~skinseg.runs.journal.OutputFiles` of a store, from one listing (no request per file)."""

    def __init__(self, store: ArrowStore, listed: Iterable[str]) -> None:
        self.store, self.names = store, set(listed)

    def exists(self, rel: str) -> bool:
        return rel in self.names

    def remove(self, rel: str) -> None:
        self.store.remove(rel)
        self.names.discard(rel)


def remove_store_temps(store: ArrowStore, listed: dict[str, list[int]], targets: set[str]) -> int:
    """Delete the temporary files (``.<name>.<token>.tmp``) of ``targets`` found in ``listed``; return how many.

    Call it only when no run is writing ``store`` (they are a killed writer's leftovers).
    """
    removed = 0
    for rel in list(listed):
        folder, name = posixpath.split(rel)
        target = temp_target_name(name)
        if target is not None and posixpath.join(folder, target) in targets:
            store.remove(rel)
            listed.pop(rel)
            removed += 1
    return removed


def prepare_store_output(journal: Any, store: ArrowStore, listed: dict[str, list[int]],
                         outputs: Iterable[Iterable[str]], *, overwrite: bool) -> int:
    """:func:`skinseg.runs.outdir.prepare_output_folder` for a store: stale temporary files, foreign files, start.

    There is no lock on a store (object stores have none that every client honours): run one
    skinseg run per output URI at a time. Returns how many stale temporary files were removed.
    """
    rels = {rel for files in outputs for rel in files}
    run_files = {journal.results.name, RUN_FILE, JOURNAL_FILE, TIMINGS_FILE}
    removed = remove_store_temps(store, listed, rels | run_files)
    check_foreign_outputs(journal, sorted(rels), lambda rel: rel in listed, store.display, store.location,
                          overwrite=overwrite)
    journal.start(overwrite=overwrite)
    return removed


class StagedRunFiles:
    """A URI output's run files, kept in a local staging folder and uploaded to the store.

    :meth:`pull` fetches run.json, journal.jsonl, timings.csv and the results CSV of an earlier
    run; :meth:`push` uploads them (each file whole, atomically). The journal is uploaded
    during the run at most every ``every_s`` seconds, and less often when an upload takes
    long (at most a tenth of the time goes to uploads), so a driver killed mid-run loses
    at most that much of the journal: those images are done again on resume.
    """

    def __init__(self, store: ArrowStore, staging: Path, results_name: str, *, every_s: float = 10.0) -> None:
        self.store, self.staging = store, Path(staging)
        self.names = (RUN_FILE, JOURNAL_FILE, TIMINGS_FILE, results_name)
        self.every_s, self._next, self._cost = float(every_s), 0.0, 0.0

    def pull(self) -> None:
        for name in self.names:
            self.store.download(name, self.staging / name)

    def push(self, names: Iterable[str] | None = None) -> None:
        import time

        t0 = time.monotonic()
        for name in names if names is not None else self.names:
            path = self.staging / name
            if path.is_file():
                self.store.write_bytes(name, path.read_bytes())
            else:
                self.store.remove(name)
        self._cost = time.monotonic() - t0
        self._next = time.monotonic() + max(self.every_s, 10 * self._cost)

    def maybe_push_journal(self) -> None:
        """Upload the journal and timings if the interval has passed."""
        import time

        if time.monotonic() >= self._next:
            self.push((JOURNAL_FILE, TIMINGS_FILE))

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
