"""Which entries of a folder are images: the one set of listing rules behind :mod:`skinseg.io` (private).

:func:`scan_entries` applies the rules to any listing, given as ``(path relative to the
root, kind)`` entries: the local folder walk of :func:`skinseg.io.scan_images` and the
object-store listing of the Ray engine (:mod:`skinseg.runs.storage`) both use it, so the
two take the same files and account for the same others.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ._imagefile import PathLike, _fspath
from ._runfile import RUN_FILE, is_run_file
from ._types import IMAGE_EXTENSIONS
from .errors import ConfigError, PathNotFolderError, PathNotFoundError

ENTRY_KINDS = ("file", "dir", "special", "dangling")
"""Kinds of listed entries: a regular file (or a link to one), a folder, a special file (FIFO, socket,
device), a link whose target is missing."""


def _check_folder(folder: PathLike, name: str) -> Path:
    d = Path(_fspath(folder, name))
    if not d.exists():
        raise PathNotFoundError(f"`{name}` folder '{d}' does not exist. Check the path.")
    if not d.is_dir():
        raise PathNotFolderError(f"`{name}` '{d}' is a file, not a folder. Pass the folder that holds it.")
    return d


@dataclass(frozen=True)
class ImageScan:
    """What :func:`scan_images` found: the image files, and every other entry by why it was left out.

    ``skipped`` maps a reason to the paths: ``"mask_suffix"`` (stem ends with the mask
    suffix, taken for a mask), ``"subfolder"`` (a folder, not searched without
    ``recursive``), ``"not_an_image_name"`` (another file ending), ``"hidden"`` (name
    starts with a dot), ``"dangling_link"``, ``"directory_named_like_an_image"`` and
    ``"special_file"`` (FIFO, socket, device) and, with ``skip_runs``, ``"skinseg_run"`` (a folder
    holding an earlier skinseg run's run.json: its files are outputs). Empty reasons are left out.
    """

    images: list[Path]
    skipped: dict[str, list[Path]]

    def skipped_counts(self) -> dict[str, int]:
        """``{reason: number of entries}`` for every reason with at least one entry."""
        return {k: len(v) for k, v in self.skipped.items() if v}


def _folder_reason(name: str, recursive: bool) -> str | None:
    if name.startswith("."):
        return "hidden"
    if PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS:
        return "directory_named_like_an_image"
    return None if recursive else "subfolder"


def _file_reason(name: str, kind: str, exclude_suffix: str | None) -> str | None:
    path = PurePosixPath(name)
    if name.startswith("."):
        return "hidden"
    if kind == "dangling":
        return "dangling_link"
    if kind != "file":
        return "special_file"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return "not_an_image_name"
    if exclude_suffix and path.stem.endswith(exclude_suffix):
        return "mask_suffix"
    return None


def _parts_key(rel: str) -> tuple[str, ...]:
    return tuple(rel.split("/"))  # part by part, as sorted(Path) compares


def _run_folders(entries: list[tuple[str, str]], read: Callable[[str], bytes]) -> list[str]:
    """The folders (relative, "" for the root) among ``entries`` that hold a skinseg run, outermost only,
    sorted: their run.json, read with ``read(rel)``, is :func:`skinseg._runfile.is_run_file`."""
    runs = set()
    for rel, kind in entries:
        parent, _, name = rel.strip("/").rpartition("/")
        if kind == "file" and name == RUN_FILE and not any(p.startswith(".") for p in parent.split("/")):
            try:
                if is_run_file(read(rel)):
                    runs.add(parent)
            except OSError:
                pass  # unreadable: not known to be a run
    outermost = (r for r in runs if not any(_inside(r, other) for other in runs if other != r))
    return sorted(outermost, key=_parts_key)


def _inside(rel: str, folder: str) -> bool:
    """True if ``rel`` is ``folder`` or inside it ("" is the root)."""
    return not folder or rel == folder or rel.startswith(folder + "/")


def scan_entries(entries: Iterable[tuple[str, str]], *, recursive: bool = False,
                 exclude_suffix: str | None = None,
                 skip_runs: Callable[[str], bytes] | None = None) -> tuple[list[str], dict[str, list[str]]]:
    """Apply the listing rules of :func:`skinseg.io.scan_images` to a listing.

    Parameters
    ----------
    entries : iterable of (str, str)
        ``(path relative to the root with "/" separators, kind)``, kind one of
        :data:`ENTRY_KINDS`, in any order. Entries inside folders that are not searched
        (hidden ones; any sub-folder without ``recursive``) may be listed: they are left out
        and their folder is accounted once, whether or not it is listed itself.
    recursive, exclude_suffix
        As for :func:`skinseg.io.scan_images`.
    skip_runs : callable, optional
        ``skip_runs(rel) -> bytes`` reads a listed file. Given, a folder (the root too) whose
        ``run.json`` is a skinseg run's (:func:`skinseg._runfile.is_run_file`) is not searched:
        its files are an earlier run's outputs; it is accounted once as ``"skinseg_run"``.

    Returns
    -------
    (images, skipped)
        The relative paths of the images, and ``{reason: relative paths}`` of the other
        entries (see :class:`ImageScan`), each sorted part by part.
    """
    if exclude_suffix == "":
        raise ConfigError(
            "`exclude_suffix` must be a non-empty string or None; got ''. Pass None to keep all files."
        )
    found: list[str] = []
    skipped: dict[str, list[str]] = {}
    folders_seen: set[str] = set()
    entries = [(rel.strip("/"), kind) for rel, kind in entries]
    runs = _run_folders(entries, skip_runs) if skip_runs is not None else []
    if runs:
        skipped["skinseg_run"] = list(runs)

    def folder(rel: str) -> None:
        if rel not in folders_seen:
            folders_seen.add(rel)
            reason = _folder_reason(rel.rsplit("/", 1)[-1], recursive)
            if reason is not None:
                skipped.setdefault(reason, []).append(rel)

    for rel, kind in entries:
        if runs and any(_inside(rel, run) for run in runs):
            continue  # inside a folder holding an earlier run (accounted above)
        parts = rel.split("/")
        blocked = next((i for i, part in enumerate(parts[:-1]) if not recursive or part.startswith(".")), None)
        if blocked is not None:  # inside a folder that is not searched: account the folder
            folder("/".join(parts[: blocked + 1]))
        elif kind == "dir":
            folder("/".join(parts))
        elif (reason := _file_reason(parts[-1], kind, exclude_suffix)) is not None:
            skipped.setdefault(reason, []).append("/".join(parts))
        else:
            found.append("/".join(parts))
    return sorted(found, key=_parts_key), {k: sorted(v, key=_parts_key) for k, v in sorted(skipped.items())}


def _walk(root: Path, recursive: bool) -> Iterator[tuple[str, str]]:
    """The entries of a local folder for :func:`scan_entries` (folders that are not searched are not entered)."""
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_base = base.relative_to(root).as_posix()
        prefix = "" if rel_base == "." else rel_base + "/"
        for d in dirnames:
            yield prefix + d, "dir"
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        for name in filenames:
            if name.startswith("."):
                yield prefix + name, "file"  # hidden: never stat'ed
                continue
            try:
                mode = os.stat(base / name).st_mode
            except OSError:
                yield prefix + name, "dangling"
                continue
            yield prefix + name, "file" if stat_mod.S_ISREG(mode) else "special"


def scan_images(folder: PathLike, *, recursive: bool = False, exclude_suffix: str | None = None,
                skip_runs: bool = False) -> ImageScan:
    """List the image files of a folder (sorted) and account for every other entry (see :class:`ImageScan`).

    An image is a non-hidden regular file (or a link to one) whose name ends in one of
    ``skinseg._types.IMAGE_EXTENSIONS`` (any case) and whose stem does not end with
    ``exclude_suffix``. With ``recursive`` non-hidden sub-folders are searched too. With ``skip_runs``
    a folder (``folder`` itself too) holding a skinseg run.json is not searched (its files are outputs).
    The rules are :func:`scan_entries`'s, which object-store listings share.
    """
    root = _check_folder(folder, "folder")
    if exclude_suffix == "":
        raise ConfigError(
            "`exclude_suffix` must be a non-empty string or None; got ''. Pass None to keep all files."
        )
    read = (lambda rel: (root / rel).read_bytes()) if skip_runs else None
    images, skipped = scan_entries(_walk(root, recursive), recursive=recursive, exclude_suffix=exclude_suffix,
                                   skip_runs=read)
    return ImageScan([root / rel for rel in images], {k: [root / rel for rel in v] for k, v in skipped.items()})
