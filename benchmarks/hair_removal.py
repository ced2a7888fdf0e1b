"""Benchmark hair removal on dev images with simulated hair.

    python benchmarks/hair_removal.py [--data DIR] [--n N] [--reps R] [--seed S]

Picks the N train/val dev images (never the test split) with the weakest black-hat
response, i.e. the least hair, among the 512-px rows of manifest.csv (``original`` or
``resized_1024x768_by_source_repo``), adds seeded synthetic hair with
:func:`skinseg.testing.add_synthetic_hair`, and scores every method against the clean
original:

- hair-mask Dice of ``detect_hair`` vs the simulated mask;
- PSNR / SSIM of the restored image, over the whole image and over the hair region
  (the simulated mask dilated by 3 px at native size, 6 px at 1024x768), and the PSNR
  gain over the hairy input on the same region;
- ms per image for ``remove_hair`` (detection included) at 1024x768, methods interleaved,
  median over images and repetitions.

Two evaluations: at the native size (~512x340, hair 1-4 px wide) and with the clean
image upscaled (bicubic) to 1024x768 before adding hair 2-8 px wide (the same hair,
physically). Timings come from the 1024x768 run. Dev images are read with
:func:`skinseg.read_image`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from _common import DATA_HELP, banner, data_dir, manifest_items, psnr, read_rgb

from skinseg.preprocess import detect_hair, remove_hair
from skinseg.testing import add_synthetic_hair

NATIVE_SIZE = ("original", "resized_1024x768_by_source_repo")
"""``image_source_note`` values of the 512-px rows of the manifest (the others are 256 px)."""

# name -> (detect kwargs, remove kwargs); "mask_from" reuses another method's detection
METHODS: dict[str, dict] = {
    "dullrazor (default)": dict(detect={}, remove={}),
    "dullrazor hair_color=both": dict(detect=dict(hair_color="both"), remove=dict(hair_color="both")),
    "dullrazor dilation=0": dict(detect={}, remove=dict(dilation=0)),
    "dullrazor dilation=2": dict(detect={}, remove=dict(dilation=2)),
    "dullrazor median_size=1": dict(detect={}, remove=dict(median_size=1)),
    "dullrazor mask + telea": dict(detect={}, remove=None, mask_then=dict(method="blackhat")),
    "blackhat+telea (baseline)": dict(detect=dict(method="blackhat"), remove=dict(method="blackhat")),
    "blackhat+ns": dict(detect=dict(method="blackhat"), remove=dict(method="blackhat", inpaint_method="ns")),
}
DEFAULT, BASELINE = "dullrazor (default)", "blackhat+telea (baseline)"


def blackhat_score(image: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    k = cv2.getStructuringElement(cv2.MORPH_CROSS, (9, 9))  # scale rule at 512 px
    return float(cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, k).mean())


def pick_images(data: Path, n: int) -> list[tuple[str, np.ndarray]]:
    # the image_source_note column as the items' label: which rows are at the native 512 px
    rows = [it for it in manifest_items(data, ("train", "val"), label_column="image_source_note")
            if it.label in NATIVE_SIZE]
    scored = []
    for r in rows:
        img = read_rgb(r.image)
        scored.append((blackhat_score(img), r.id, img))
    scored.sort(key=lambda t: t[0])
    return [(i, img) for _, i, img in scored[:n]]


def run_method(spec: dict, hairy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = detect_hair(hairy, **spec["detect"])
    if spec.get("remove") is not None:
        clean = remove_hair(hairy, **spec["remove"])
    else:
        clean = remove_hair(hairy, hair_mask=detect_hair(hairy, **spec["detect"]), **spec["mask_then"])
    return mask, clean


def timed(spec: dict, hairy: np.ndarray) -> float:
    t0 = time.perf_counter()
    if spec.get("remove") is not None:
        remove_hair(hairy, **spec["remove"])
    else:
        remove_hair(hairy, hair_mask=detect_hair(hairy, **spec["detect"]), **spec["mask_then"])
    return (time.perf_counter() - t0) * 1e3


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


def evaluate(images, size, width_range, ring, seed, reps, color="dark", methods=METHODS):
    from skimage.metrics import structural_similarity

    res = {m: {k: [] for k in ("dice", "dice_rm", "psnr", "psnr_r", "ssim", "ssim_r", "gain", "gain_r", "ms")}
           for m in methods}
    for i, (_, img) in enumerate(images):
        clean = img if size is None else cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
        hairy, truth = add_synthetic_hair(clean, width_range=width_range, color=color, rng=seed + i)
        region = cv2.dilate(truth.astype(np.uint8),
                            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ring + 1, 2 * ring + 1))) > 0
        base_p, base_pr = psnr(hairy, clean), psnr(hairy, clean, region)
        for name, spec in methods.items():
            mask, out = run_method(spec, hairy)
            s, smap = structural_similarity(clean, out, channel_axis=2, data_range=255, full=True)
            r = res[name]
            r["dice"].append(dice(mask, truth))
            r["dice_rm"].append(dice((out != hairy).any(axis=2), truth))
            r["psnr"].append(psnr(out, clean))
            r["psnr_r"].append(psnr(out, clean, region))
            r["ssim"].append(s)
            r["ssim_r"].append(float(smap[region].mean()))
            r["gain"].append(r["psnr"][-1] - base_p)
            r["gain_r"].append(r["psnr_r"][-1] - base_pr)
        if reps:
            for _ in range(reps):  # interleaved, order rotated so no method always runs first
                names = list(methods)
                k = len(res[DEFAULT]["ms"]) % len(names)
                for name in names[k:] + names[:k]:
                    res[name]["ms"].append(timed(methods[name], hairy))
        print(f"  [{i + 1}/{len(images)}]", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return res


def print_table(title: str, res: dict, timing: bool) -> None:
    print(f"\n{title}")
    head = (f"{'method':<28}{'Dice':>6}{'Dice_rm':>8}{'PSNR':>7}{'PSNR_h':>8}{'SSIM':>7}{'SSIM_h':>8}"
            f"{'gain':>7}{'gain_h':>8}")
    if timing:
        head += f"{'ms@1024':>9}{'speed':>7}"
    print(head)
    print("-" * len(head))
    t_base = np.median(res[BASELINE]["ms"]) if timing and BASELINE in res else None
    for name, r in res.items():
        line = (f"{name:<28}{np.mean(r['dice']):6.3f}{np.mean(r['dice_rm']):8.3f}"
                f"{np.mean(r['psnr']):7.2f}{np.mean(r['psnr_r']):8.2f}"
                f"{np.mean(r['ssim']):7.4f}{np.mean(r['ssim_r']):8.4f}{np.mean(r['gain']):7.2f}"
                f"{np.mean(r['gain_r']):8.2f}")
        if timing:
            t = np.median(r["ms"])
            line += f"{t:9.1f}{t_base / t:6.2f}x"
        print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None,
                    help=f"folder with manifest.csv and images/ ({DATA_HELP})")
    ap.add_argument("--n", type=int, default=20, help="number of dev images (default 20)")
    ap.add_argument("--reps", type=int, default=3, help="timing repetitions per image (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated hair (default 0)")
    args = ap.parse_args(argv)
    args.data = args.data or data_dir()

    banner(libraries=("numpy", "cv2", "skimage"))
    images = pick_images(args.data, args.n)
    print(f"{len(images)} train/val images with the least hair (black-hat score): "
          + " ".join(i for i, _ in images))
    print("Dice: detect_hair mask vs simulated mask; Dice_rm: pixels changed by remove_hair (mask after "
          "its dilation) vs simulated mask.")
    print("Metrics are means over images; _h = hair region (simulated mask dilated 3 px native / 6 px at "
          "1024); gain = PSNR(restored) - PSNR(hairy) in dB; ms = median remove_hair time incl. "
          "detection; speed = baseline ms / method ms.")

    res = evaluate(images, None, (1.0, 4.0), 3, args.seed, 0)
    print_table("A. native size (~512x340), 12 dark hairs 1-4 px wide", res, timing=False)
    res_a = res
    res = evaluate(images, (1024, 768), (2.0, 8.0), 6, args.seed, args.reps)
    print_table("B. upscaled to 1024x768, 12 dark hairs 2-8 px wide (timings)", res, timing=True)
    res_b = res

    light_methods = {
        DEFAULT: METHODS[DEFAULT],
        "dullrazor hair_color=light": dict(detect=dict(hair_color="light"), remove=dict(hair_color="light")),
        "dullrazor hair_color=both": METHODS["dullrazor hair_color=both"],
        "blackhat light+telea": dict(detect=dict(method="blackhat", hair_color="light"),
                                     remove=dict(method="blackhat", hair_color="light")),
    }
    res = evaluate(images, (1024, 768), (2.0, 8.0), 6, args.seed, 0, color="light", methods=light_methods)
    print_table("C. 1024x768, 12 LIGHT hairs 2-8 px wide", res, timing=False)

    print("\nD. the same images without simulated hair, 1024x768: % of pixels detect_hair flags, PSNR of")
    print("   remove_hair output vs its input (rulers, pen marks, vignette edges and real hair are flagged)")
    print(f"{'method':<28}{'flagged %':>10}{'PSNR':>8}")
    light_only = {"dullrazor hair_color=light": light_methods["dullrazor hair_color=light"]}
    for name, spec in {**METHODS, **light_only}.items():
        flagged, ps = [], []
        for _, img in images:
            clean = cv2.resize(img, (1024, 768), interpolation=cv2.INTER_CUBIC)
            mask, out = run_method(spec, clean)
            flagged.append(100 * mask.mean())
            ps.append(min(psnr(out, clean), 99.0))
        print(f"{name:<28}{np.mean(flagged):10.3f}{np.mean(ps):8.2f}")

    t_def, t_base = np.median(res_b[DEFAULT]["ms"]), np.median(res_b[BASELINE]["ms"])
    print("\nTargets for the default method (A / B):")
    for label, ok, text in (
        ("Dice >= 0.75", min(np.mean(res_a[DEFAULT]["dice"]), np.mean(res_b[DEFAULT]["dice"])) >= 0.75,
         f"{np.mean(res_a[DEFAULT]['dice']):.3f} / {np.mean(res_b[DEFAULT]['dice']):.3f}"),
        ("PSNR gain >= 8 dB (hair region)",
         min(np.mean(res_a[DEFAULT]["gain_r"]), np.mean(res_b[DEFAULT]["gain_r"])) >= 8,
         f"{np.mean(res_a[DEFAULT]['gain_r']):.2f} / {np.mean(res_b[DEFAULT]['gain_r']):.2f} dB"),
        ("<= 50 ms at 1024x768", t_def <= 50, f"{t_def:.1f} ms"),
        ("speed >= 0.7x baseline", t_base / t_def >= 0.7,
         f"{t_base / t_def:.2f}x ({t_def:.1f} vs {t_base:.1f} ms)"),
    ):
        print(f"  {'MET ' if ok else 'MISS'}  {label:<32} {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
