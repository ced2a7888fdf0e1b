"""Does bf16 autocast change the bundled model's masks? Dice on the dev test split, fp32 vs bf16.

    python benchmarks/bf16_check.py [--split test]

skinseg would offer bf16 only if the per-image mean Dice changes by < 0.002 and it is faster.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import skinseg as ss
from skinseg.data import read_manifest
from skinseg.metrics import dice_score
from skinseg.postprocess import postprocess_mask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lesions"

ap = argparse.ArgumentParser()
ap.add_argument("--split", default="test")
ap.add_argument("--data", default=str(DATA))
args = ap.parse_args()
model = ss.load_segmenter("default")
items = read_manifest(Path(args.data) / "manifest.csv", args.split)
scores = {"fp32": [], "bf16": []}
secs = {"fp32": 0.0, "bf16": 0.0}
for image_path, mask_path in items:
    image = ss.read_image(image_path)
    truth = ss.read_mask(mask_path, shape=image.shape[:2])
    for mode in ("fp32", "bf16"):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            prob = ss.predict_proba(model, image)
        secs[mode] += time.perf_counter() - t
        scores[mode].append(dice_score(postprocess_mask(prob, threshold=0.5), truth))
a, b = np.mean(scores["fp32"]), np.mean(scores["bf16"])
print(f"{len(items)} images of split {args.split}: mean Dice fp32 {a:.4f}, bf16 {b:.4f}, change {b - a:+.4f}; "
      f"max per-image |change| {np.max(np.abs(np.subtract(scores['bf16'], scores['fp32']))):.4f}")
print(f"time per image: fp32 {secs['fp32'] / len(items) * 1000:.0f} ms, bf16 {secs['bf16'] / len(items) * 1000:.0f} ms")
accurate, faster = abs(b - a) < 0.002, secs["bf16"] < secs["fp32"]
print("verdict:", "offer bf16" if accurate and faster else
      f"do not offer bf16 (Dice change {'<' if accurate else '>='} 0.002, {'faster' if faster else 'slower'} than fp32)")
