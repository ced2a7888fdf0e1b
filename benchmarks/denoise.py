"""Benchmark denoising filters on dev images with added noise.

    python benchmarks/denoise.py [--data DIR] [--n N] [--reps R] [--seed S]

Takes the first N train/val dev images (never the test split, sorted by id) among the
512-px rows of manifest.csv, adds Gaussian noise (sigma = 15 levels) or salt-and-pepper
noise (5 % of the pixels, half 0 and half 255, all channels), and reports PSNR before
and after each filter at the native size (~512x340), plus the median time per image at
1024x768 (the clean dev image upscaled, bicubic, with the same kind of noise), filters
interleaved. ``scipy.signal.wiener`` (per channel, float64) is the speed and accuracy
reference. Dev images are read with :func:`skinseg.read_image`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from _common import DATA_HELP, banner, data_dir, manifest_items, psnr, read_rgb

from skinseg.preprocess import denoise_median, denoise_wiener

NATIVE_SIZE = ("original", "resized_1024x768_by_source_repo")
"""``image_source_note`` values of the 512-px rows of the manifest (the others are 256 px)."""


def scipy_wiener(image: np.ndarray, window: int) -> np.ndarray:
    from scipy import signal

    out = np.stack([signal.wiener(image[..., c].astype(np.float64), (window, window)) for c in range(3)], -1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


FILTERS = {
    "median k=3": lambda im: denoise_median(im, kernel_size=3),
    "median k=5": lambda im: denoise_median(im, kernel_size=5),
    "wiener window=3": lambda im: denoise_wiener(im, window=3),
    "wiener window=5": lambda im: denoise_wiener(im, window=5),
    "wiener window=7": lambda im: denoise_wiener(im, window=7),
    "scipy.signal.wiener 5 (ref)": lambda im: scipy_wiener(im, 5),
}


def add_noise(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian":
        return np.clip(np.rint(image + rng.normal(0.0, 15.0, image.shape)), 0, 255).astype(np.uint8)
    noisy = image.copy()
    u = rng.random(image.shape[:2])
    noisy[u < 0.025] = 0
    noisy[u > 0.975] = 255
    return noisy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None,
                    help=f"folder with manifest.csv and images/ ({DATA_HELP})")
    ap.add_argument("--n", type=int, default=20, help="number of dev images (default 20)")
    ap.add_argument("--reps", type=int, default=3, help="timing repetitions per image (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    args = ap.parse_args(argv)
    args.data = args.data or data_dir()

    banner(libraries=("numpy", "cv2", "scipy"))
    # the image_source_note column as the items' label: which rows are at the native 512 px
    rows = sorted((it for it in manifest_items(args.data, ("train", "val"), label_column="image_source_note")
                   if it.label in NATIVE_SIZE), key=lambda it: it.id)[: args.n]
    images = [read_rgb(it.image) for it in rows]
    print(f"{len(images)} train/val images, first by id: {rows[0].id} .. {rows[-1].id}")
    rng = np.random.default_rng(args.seed)

    kinds = ("gaussian", "saltpepper")
    before = {k: [] for k in kinds}
    after = {(name, k): [] for name in FILTERS for k in kinds}
    ms = {name: [] for name in FILTERS}
    for i, clean in enumerate(images):
        for kind in kinds:
            noisy = add_noise(clean, kind, rng)
            before[kind].append(psnr(noisy, clean))
            for name, fn in FILTERS.items():
                after[(name, kind)].append(psnr(fn(noisy), clean))
        big = add_noise(cv2.resize(clean, (1024, 768), interpolation=cv2.INTER_CUBIC), "gaussian", rng)
        names = list(FILTERS)
        for r in range(args.reps):  # interleaved, rotating the order
            k = (i * args.reps + r) % len(names)
            for name in names[k:] + names[:k]:
                t0 = time.perf_counter()
                FILTERS[name](big)
                ms[name].append((time.perf_counter() - t0) * 1e3)
        print(f"  [{i + 1}/{len(images)}]", file=sys.stderr, end="\r")
    print(file=sys.stderr)

    print("\nPSNR in dB vs the clean image (mean over images, native size); gain = after - before;")
    print("ms = median time per 1024x768 RGB image (Gaussian-noise input).")
    head = (f"{'filter':<29}{'gauss before':>13}{'after':>7}{'gain':>7}"
            f"{'s&p before':>12}{'after':>7}{'gain':>7}{'ms@1024':>9}")
    print(head)
    print("-" * len(head))
    for name in FILTERS:
        cells = ""
        for kind in kinds:
            b, a = np.mean(before[kind]), np.mean(after[(name, kind)])
            cells += f"{b:{13 if kind == 'gaussian' else 12}.2f}{a:7.2f}{a - b:7.2f}"
        print(f"{name:<29}{cells}{np.median(ms[name]):9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
