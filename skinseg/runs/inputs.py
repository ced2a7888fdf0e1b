"""The inputs of a folder run: image files with their output paths, what was not taken, and how they are read.

Shared by every job and engine: :func:`list_inputs` lists the images of a store (a local
folder or a URI, :mod:`skinseg.runs.storage`; one set of rules, :func:`skinseg.io.scan_entries`),
gives each an :class:`InputFile` with the files it will write (relative to the output
folder), refuses two inputs that would write the same file, and counts the entries that
were not taken as images, by reason. :class:`ImageReader` reads each input once: its
header for the pixel budget of the stream, then the same bytes decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..io import DEFAULT_MAX_PIXELS, image_size, read_image_bytes

__all__ = ["InputFile", "InputOptions", "Listing", "list_inputs", "no_images_error", "ImageReader"]


@dataclass(frozen=True)
class InputFile:
    """One input file: its position, path (as messages name it), key (path relative to the input folder,
    ``/``-separated) and the files it writes (``name -> path relative to the output folder``, in write order)."""

    index: int
    path: str
    key: str
    outputs: dict[str, str]


@dataclass(frozen=True)
class InputOptions:
    """Which files of the input folder a job takes, and how it reads them.

    ``recursive``: search sub-folders; ``exclude_suffix``: files whose stem ends with it are
    masks, not inputs; ``convert`` and ``max_pixels`` as in :func:`skinseg.io.read_image`;
    ``include_runs``: also search folders holding an earlier skinseg run (its run.json; skipped
    and counted by default); ``verify_inputs``: a resume compares each local input by a hash of
    its content (:class:`~skinseg.runs.journal.RunJournal`), not by its modification time.
    """

    recursive: bool = False
    exclude_suffix: str | None = None
    convert: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    include_runs: bool = False
    verify_inputs: bool = False


@dataclass(frozen=True)
class Listing:
    """The inputs of a run (in order), the entries not taken (``{reason: count}``) and the [size, mtime]
    of each input the listing already knows (object stores; a local file is stat'ed when asked)."""

    items: list[InputFile]
    not_taken: dict[str, int]
    stats: dict[str, list[int]]


def list_inputs(store: Any, options: InputOptions, outputs: Callable[[str], dict[str, str]]) -> Listing:
    """The images of ``store`` as :class:`InputFile` s (see :class:`skinseg.io.ImageScan` for what is taken).

    ``outputs(relative path) -> {name: output path}`` names each input's files. Folders that
    hold an earlier skinseg run (its run.json) are not searched unless ``options.include_runs``: their
    masks and overlays would be taken for images.

    Raises
    ------
    ConfigError
        Two inputs would write the same output file (e.g. ``a.jpg`` and ``a.png``).
    """
    found, not_taken = store.scan_images(recursive=options.recursive, exclude_suffix=options.exclude_suffix,
                                         skip_runs=not options.include_runs)
    items: list[InputFile] = []
    owner: dict[str, str] = {}
    for i, (rel, _) in enumerate(found):
        files = outputs(rel)
        path = store.display(rel)
        for out_rel in files.values():
            if out_rel in owner:
                raise ConfigError(
                    f"'{owner[out_rel]}' and '{path}' would both write '{out_rel}' (same stem). Rename "
                    "one of them or move it to another folder."
                )
            owner[out_rel] = path
        items.append(InputFile(i, path, rel, files))
    return Listing(items, not_taken, {rel: stat for rel, stat in found if stat is not None})


def no_images_error(src: object, recursive: bool, not_taken: dict[str, int], mask_suffix: str | None) -> ConfigError:
    """The error for a folder without images, saying what was found instead."""
    found = []
    if not_taken.get("mask_suffix"):
        found.append(f"{not_taken['mask_suffix']} file(s) ending in '{mask_suffix}' were taken for masks "
                     "(pass another --mask-suffix if they are images)")
    if not_taken.get("subfolder") and not recursive:
        found.append(f"{not_taken['subfolder']} sub-folder(s) were not searched (pass recursive=True / --recursive)")
    if not_taken.get("skinseg_run"):
        found.append(f"{not_taken['skinseg_run']} folder(s) hold an earlier skinseg run (run.json) and were "
                     "not searched: their files are outputs (include_runs=True / --include-runs takes them)")
    other = sum(v for k, v in not_taken.items() if k not in ("mask_suffix", "subfolder", "skinseg_run"))
    if other:
        found.append(f"{other} other entr{'y was' if other == 1 else 'ies were'} not images")
    return ConfigError(
        f"No images found in '{src}' (looked for .jpg, .jpeg, .png, .bmp, .tif, .tiff"
        f"{'' if recursive else ', not in sub-folders'})" + (": " + "; ".join(found) if found else "") + "."
    )


class ImageReader:
    """Reads a run's inputs from a store, each file once: :meth:`pixels` reads the file and its header (for the
    stream's pixel budget), :meth:`load` decodes the same bytes (:func:`skinseg.io.read_image_bytes`).

    The two calls come one after the other in one reader thread of
    :func:`~skinseg.inference.predict_stream`; the bytes are held in between only. A file
    that cannot be read gets 0 pixels, and :meth:`load` raises its error.
    """

    def __init__(self, store: Any, options: InputOptions) -> None:
        self.store, self.convert, self.max_pixels = store, options.convert, options.max_pixels
        self._held: dict[str, bytes] = {}

    def pixels(self, item: InputFile) -> int:
        data = self.store.read_bytes(item.key)
        self._held[item.key] = data
        h, w = image_size(data, name=item.path)
        return h * w if h * w <= self.max_pixels else 0

    def load(self, item: InputFile) -> np.ndarray:
        data = self._held.pop(item.key, None)
        if data is None:
            data = self.store.read_bytes(item.key)
        return read_image_bytes(data, name=item.path, convert=self.convert, max_pixels=self.max_pixels)
