"""What the per-image quality estimate costs in ``skinseg segment``: the default run with and without it.

    python benchmarks/quality_cost.py [--model default] [--n 200] [--repeats 3]

In one run, on the same N dev images (``lesions`` then ``ham10000`` images): the default
segment path (:func:`skinseg.runs.segment_folder` with ``Predictor.load(model)``: ONNX Runtime,
int8 where shipped, flip TTA, overlays) with the model's quality estimate, and the same
Predictor without it (``quality=None``), alternating, ``--repeats`` times each. Prints the
median wall time of each and the estimate's cost as a share of the default time (target:
at most 10 %). Also the time of the signals alone (:func:`skinseg.quality.quality_features`)
per image. The masks of both runs are compared byte for byte (the estimate changes nothing else).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import banner, data_dir, link_images


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    banner(libraries=("numpy", "onnxruntime", "cv2"))
    import skinseg as ss
    from skinseg.inference import Predictor
    from skinseg.io import list_images
    from skinseg.quality import quality_features
    from skinseg.runs import segment_folder

    half = args.n // 2
    paths = list_images(data_dir("lesions") / "images")[:half] + list_images(data_dir("ham10000") / "images")[
        : args.n - half]
    tmp = Path(tempfile.mkdtemp(prefix="skinseg-qcost-"))
    try:
        folder = link_images(paths, tmp / "images")
        with_q = Predictor.load(args.model)
        if with_q.quality is None:
            raise SystemExit(f"error: '{args.model}' has no fitted quality estimate.")
        without = Predictor.load(args.model, quality=None)
        segment_folder(without, folder, tmp / "warm", progress=False)  # warm-up: caches, page cache
        times: dict[str, list[float]] = {"q": [], "n": []}
        for r in range(args.repeats):
            for tag, predictor in (("q", with_q), ("n", without))[:: 1 if r % 2 else -1]:
                t0 = time.perf_counter()
                segment_folder(predictor, folder, tmp / f"{tag}{r}", progress=False)
                times[tag].append(time.perf_counter() - t0)
        a, b = statistics.median(times["q"]), statistics.median(times["n"])
        masks_same = all((tmp / "q0" / f"{p.stem}_segmentation.png").read_bytes()
                         == (tmp / "n0" / f"{p.stem}_segmentation.png").read_bytes() for p in paths)
        image = ss.read_image(paths[0])
        prob = without.predict_proba(image)
        mask = prob >= 0.5
        t0 = time.perf_counter()
        for _ in range(50):
            quality_features(prob, mask, image)
        per_image_ms = (time.perf_counter() - t0) / 50 * 1e3
        print(f"{len(paths)} images, {args.repeats} runs each (alternating), model {args.model} "
              f"({with_q.backend.name} {with_q.backend.precision}, TTA {with_q.tta})")
        print(f"  default with the quality estimate: median {a:.2f} s ({[round(t, 2) for t in times['q']]})")
        print(f"  the same without it (quality=None): median {b:.2f} s ({[round(t, 2) for t in times['n']]})")
        print(f"  the estimate costs {100 * (a - b) / a:.1f} % of the default time (target <= 10 %); "
              f"signals alone {per_image_ms:.1f} ms per image ({paths[0].name}); masks identical: {masks_same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
