"""skinseg as a library: hair removal, segmentation (torch and the fast ONNX path), metrics, an overlay
picture, and a resumable folder run.

    python examples/quickstart.py            # writes into quickstart_out/ beside this folder

Uses the bundled model and the example ISIC images; needs no network. Its outputs have their own
folder, so the README's `skinseg segment examples/images -o out` and `skinseg evaluate out
examples/masks` see only their own masks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

import skinseg as ss
from skinseg import metrics, preprocess

HERE = Path(__file__).resolve().parent


def contour_overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The image with the expert outline in blue and the predicted outline in green."""
    out = image.copy()
    for mask, colour in ((truth, (40, 120, 255)), (pred, (40, 230, 40))):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, colour, 2)
    return out


def main() -> None:
    model = ss.load_segmenter("default")  # torch
    fast = ss.Predictor.load("default")  # the default CLI path: ONNX Runtime, int8 where shipped
    print(f"fast path: {fast.backend!r}, flip TTA {fast.tta}")
    tiles = []
    for image_path in sorted((HERE / "images").glob("*.jpg")):
        image = ss.read_image(image_path)
        truth = ss.read_mask(HERE / "masks" / f"{image_path.stem}_segmentation.png", shape=image.shape[:2])
        clean = preprocess.remove_hair(image)  # DullRazor; the bundled model was trained without it
        mask = ss.segment(model, image)
        fast_mask = fast.segment(image)
        print(f"{image_path.name}: Dice {metrics.dice_score(mask, truth):.3f} (fast path "
              f"{metrics.dice_score(fast_mask, truth):.3f})  IoU {metrics.iou_score(mask, truth):.3f}  "
              f"hair pixels removed {int((clean != image).any(axis=2).sum())}")
        tile = contour_overlay(image, mask, truth)
        tiles.append(cv2.resize(tile, (384, int(384 * tile.shape[0] / tile.shape[1]))))
    h = max(t.shape[0] for t in tiles)
    row = np.hstack([np.pad(t, ((0, h - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles])
    out = HERE.parent / "quickstart_out"  # not out/: that is the README's segment folder
    out.mkdir(exist_ok=True)
    ss.write_image(out / "quickstart.png", row, overwrite=True)
    print(f"wrote {out / 'quickstart.png'} (green: skinseg, blue: expert)")
    result = ss.segment_folder(fast, HERE / "images", out / "masks", progress=False)  # rerun: resumes
    print(f"folder run: {result.n_ok} of {result.n_images} segmented, {result.n_skipped} complete already; "
          f"rows in {result.results_csv}")


if __name__ == "__main__":
    main()
