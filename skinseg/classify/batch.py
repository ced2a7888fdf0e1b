"""Classify a folder of dermoscopy images: segment (or read masks), crop, classify, measure.

Used by ``skinseg classify``. Results are appended to ``rows.jsonl`` as each image
finishes, so an interrupted run resumes where it stopped; ``classification.csv``
is rewritten in input order at the end. A bad file gets an ``error`` row and the
run goes on. Inputs are never written to.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SkinsegError
from .model import Classifier, ClassifierEnsemble
from .predict import gradcam, gradcam_overlay, predict_proba

__all__ = ["classify_folder", "ROWS_FILE", "CSV_FILE"]

ROWS_FILE = "rows.jsonl"
CSV_FILE = "classification.csv"


def _features(image: np.ndarray, mask: np.ndarray, pixel_size_mm: float | None) -> dict[str, Any]:
    from ..features import FEATURE_NAMES, lesion_features

    if not mask.any():
        return {k: "" for k in FEATURE_NAMES}
    return lesion_features(image, mask, pixel_size_mm=pixel_size_mm)


def classify_folder(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    classifier: Classifier | ClassifierEnsemble,
    segmenter: Any | None = None,
    masks_dir: str | os.PathLike | None = None,
    mask_suffix: str = "_segmentation",
    save_gradcam: bool = False,
    measure: bool = True,
    pixel_size_mm: float | None = None,
    tta: bool = False,
    progress: bool = True,
    convert: bool = False,
    on_image: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Classify every image of ``in_dir`` into ``out_dir``; returns the rows (one per image).

    With ``masks_dir`` the lesion masks are read from there (paired by stem +
    ``mask_suffix``); otherwise ``segmenter`` predicts them and they are saved to
    ``out_dir/masks``. Columns: file, status, error_type, error, mask_source,
    mask_empty, p_<class> per class, predicted_label, confidence, then the ABCD
    measurements (``measure``).
    """
    from ..io import list_images, pair_images_and_masks, read_image, read_mask, write_image, write_mask

    src, out = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not src.is_dir():
        raise SkinsegError(f"Input folder '{src}' not found (or not a folder).")
    if out == src or src in out.parents:
        raise SkinsegError(f"The output folder '{out}' must not be the input folder or inside it.")
    if masks_dir is None and segmenter is None:
        raise ConfigError("Pass either masks_dir (expert masks) or a segmenter to predict masks.")
    mask_of: dict[Path, Path] = {}
    if masks_dir is not None:
        pairs, _, _ = pair_images_and_masks(src, masks_dir, mask_suffix=mask_suffix)
        mask_of = {p.resolve(): m for p, m in pairs}
        images = list_images(src, exclude_suffix=mask_suffix if Path(masks_dir).resolve() == src else None)
    else:
        images = list_images(src)
    out.mkdir(parents=True, exist_ok=True)
    names = list(classifier.class_names)
    done: dict[str, dict[str, Any]] = {}
    rows_path = out / ROWS_FILE
    if rows_path.is_file():
        kept = []
        for line in rows_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that image is redone
            kept.append(line)
            if row.get("status") == "ok":
                done[row["file"]] = row
        tmp = rows_path.with_name("." + ROWS_FILE + ".tmp")
        tmp.write_text("".join(x + "\n" for x in kept))
        os.replace(tmp, rows_path)  # drop the cut line so appended rows start on a fresh line
    iterator: Any = images
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(images, desc="classifying", unit="img", initial=0)
    rows = []
    with open(rows_path, "a") as log:
        for path in iterator:
            key = str(path.relative_to(src))
            if key in done:
                rows.append(done[key])
                continue
            row: dict[str, Any] = {"file": key, "status": "ok", "error_type": "", "error": ""}
            try:
                image = read_image(path, convert=convert)
                if masks_dir is not None:
                    mpath = mask_of.get(path.resolve())
                    if mpath is None:
                        raise SkinsegError(
                            f"No mask for '{path.name}' in '{masks_dir}' "
                            f"(expected '{path.stem}{mask_suffix}.png')."
                        )
                    mask = read_mask(mpath, shape=image.shape[:2])
                    row["mask_source"] = str(mpath)
                else:
                    from ..postprocess import segment

                    mask = segment(segmenter, image)
                    write_mask(out / "masks" / f"{path.stem}_mask.png", mask, overwrite=True)
                    row["mask_source"] = "predicted"
                row["mask_empty"] = int(not mask.any())
                p = predict_proba(classifier, image, mask, tta=tta)
                row.update({f"p_{n}": round(float(v), 6) for n, v in zip(names, p)})
                row["predicted_label"] = names[int(np.argmax(p))]
                row["confidence"] = round(float(np.max(p)), 6)
                if measure:
                    row.update(_features(image, mask, pixel_size_mm))
                if save_gradcam:
                    cam = gradcam(classifier, image, mask, target=int(np.argmax(p)))
                    write_image(
                        out / "gradcam" / f"{path.stem}_gradcam.png",
                        gradcam_overlay(image, cam),
                        overwrite=True,
                    )
            except (SkinsegError, OSError, ValueError) as exc:
                row = {"file": key, "status": "error", "error_type": type(exc).__name__, "error": str(exc)}
            rows.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            if on_image is not None:
                on_image(row)
    _write_csv(out / CSV_FILE, rows, names, measure)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]], names: list[str], measure: bool) -> None:
    fields = [
        "file",
        "status",
        "error_type",
        "error",
        "mask_source",
        "mask_empty",
        *[f"p_{n}" for n in names],
        "predicted_label",
        "confidence",
    ]
    if measure:
        from ..features import FEATURE_NAMES

        fields += list(FEATURE_NAMES)
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
