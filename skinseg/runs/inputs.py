"""The inputs of a folder run: image files as jobs with their output paths, and what was not taken.

Shared by every runner: :func:`list_inputs` lists the images of a folder
(:func:`skinseg.io.scan_images`), gives each a :class:`Job` with the files it will
write (relative to the output folder), refuses two inputs that would write the same
file, and counts the folder entries that were not taken as images, by reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..io import scan_images

__all__ = ["Job", "list_inputs", "no_images_error"]


@dataclass(frozen=True)
class Job:
    """One input file: its position, path, key (path relative to the input folder, ``/``-separated)
    and the files it writes (``name -> path relative to the output folder``, in write order)."""

    index: int
    path: str
    key: str
    outputs: dict[str, str]

    @property
    def mask(self) -> str:
        return self.outputs["mask"]

    @property
    def overlay(self) -> str:
        return self.outputs["overlay"]


def list_inputs(
    src: Path, *, recursive: bool, exclude_suffix: str | None, outputs: Callable[[Path], dict[str, str]],
    include_runs: bool = False,
) -> tuple[list[Job], dict[str, int]]:
    """The images of ``src`` as jobs, and the counts of entries not taken (see :class:`skinseg.io.ImageScan`).

    ``outputs(relative path) -> {name: output path}`` names each input's files. Folders that
    hold an earlier skinseg run (its run.json) are not searched unless ``include_runs``: their
    masks and overlays would be taken for images.

    Raises
    ------
    ConfigError
        Two inputs would write the same output file (e.g. ``a.jpg`` and ``a.png``).
    """
    scan = scan_images(src, recursive=recursive, exclude_suffix=exclude_suffix, skip_runs=not include_runs)
    jobs: list[Job] = []
    owner: dict[str, Path] = {}
    for i, path in enumerate(scan.images):
        rel = path.relative_to(src)
        files = outputs(rel)
        for out_rel in files.values():
            if out_rel in owner:
                raise ConfigError(
                    f"'{owner[out_rel]}' and '{path}' would both write '{out_rel}' (same stem). Rename "
                    "one of them or move it to another folder."
                )
            owner[out_rel] = path
        jobs.append(Job(i, str(path), rel.as_posix(), files))
    return jobs, scan.skipped_counts()


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
