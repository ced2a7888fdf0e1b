"""Does bf16 autocast change the bundled model's masks? Dice on the dev test split, fp32 vs bf16.

    python benchmarks/bf16_check.py [--split test]

skinseg would offer bf16 only if the per-image mean Dice changes by < 0.002 and it is faster.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import DATA_HELP, banner, data_dir, manifest_items


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="test")
    ap.add_argument("--data", default=None, help=f"dev-set folder with manifest.csv ({DATA_HELP})")
    args = ap.parse_args(argv)
    args.data = args.data or str(data_dir())

    import torch

    import skinseg as ss
    from skinseg.metrics import dice_score
    from skinseg.postprocess import postprocess_mask

    banner(libraries=("numpy", "torch"))
    model = ss.load_segmenter("default")
    items = manifest_items(args.data, args.split)
    scores: dict[str, list[float]] = {"fp32": [], "bf16": []}
    secs = {"fp32": 0.0, "bf16": 0.0}
    for item in items:
        image = ss.read_image(item.image)
        truth = ss.read_mask(item.mask, shape=image.shape[:2])
        for mode in ("fp32", "bf16"):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                prob = ss.predict_proba(model, image)
            secs[mode] += time.perf_counter() - t
            scores[mode].append(dice_score(postprocess_mask(prob, threshold=0.5), truth))
    a, b = np.mean(scores["fp32"]), np.mean(scores["bf16"])
    largest = np.max(np.abs(np.subtract(scores["bf16"], scores["fp32"])))
    print(f"{len(items)} images of split {args.split}: mean Dice fp32 {a:.4f}, bf16 {b:.4f}, "
          f"change {b - a:+.4f}; max per-image |change| {largest:.4f}")
    print(f"time per image: fp32 {secs['fp32'] / len(items) * 1000:.0f} ms, "
          f"bf16 {secs['bf16'] / len(items) * 1000:.0f} ms")
    accurate, faster = abs(b - a) < 0.002, secs["bf16"] < secs["fp32"]
    print("verdict:", "offer bf16" if accurate and faster else
          f"do not offer bf16 (Dice change {'<' if accurate else '>='} 0.002, "
          f"{'faster' if faster else 'slower'} than fp32)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
