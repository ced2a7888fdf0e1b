"""Inference cost of segmenters and classifiers, measured in one run: size, GFLOPs, ms per image.

For each segmenter: parameters, float16 weight bytes, GFLOPs of one forward pass at its
input box (256 x 192 for ``input_size=256``; torch.utils.flop_counter, 2 FLOPs per
multiply-add) and the forward passes its TTA default makes per image, and the median
milliseconds per image of ``predict_proba`` (with the model's TTA default and with one
forward) over real ``val`` images. The models are timed in turns (A, B, A, B, ...) so
machine load affects all of them alike. Classifiers (``--classifier``) get parameters,
bytes, GFLOPs per image (times 4 with an ensemble's stored flip-TTA default) and ms per image of
``predict_proba`` with the model's own TTA default and with one forward per member.

    python benchmarks/model_cost.py --model runs/default_v1 default --classifier runs/classifier_v1 default \
        --threads 1 --n 40
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATA_HELP, banner, data_dir


def gflops(module, x) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() / 1e9


def n_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def weight_bytes(path: str, kind: str = "segmenter") -> int:
    from skinseg.models.checkpoint import resolve_checkpoint

    return int(sum(f.stat().st_size for f in resolve_checkpoint(path, kind).rglob("*.safetensors")))


def classifier_bytes(path: str) -> int:
    return weight_bytes(path, "classifier")


def main() -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="*", default=["default"], help="segmenter checkpoints")
    ap.add_argument("--classifier", nargs="*", default=[], help="classifier checkpoints")
    ap.add_argument("--data", default=None, help=f"the 'lesions' dev set ({DATA_HELP})")
    ap.add_argument("--n", type=int, default=40, help="val images timed per model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    banner(libraries=("numpy", "torch"))
    import torch

    torch.set_num_threads(args.threads)
    import skinseg as ss
    import skinseg.classify as C
    from skinseg.data import read_manifest

    args.data = args.data or str(data_dir("lesions"))
    items = read_manifest(Path(args.data) / "manifest.csv", "val")[: args.n]
    images = [ss.read_image(item.image) for item in items]
    masks = [ss.read_mask(item.mask, shape=im.shape[:2]) for item, im in zip(items, images, strict=True)]
    out: dict = {"threads": args.threads, "n_images": len(images), "segmenters": {}, "classifiers": {}}
    segs = {name: ss.load_segmenter(name).eval() for name in args.model}
    clfs = {name: C.load_classifier(name).eval() for name in args.classifier}
    for name, model in segs.items():
        h, w = model.config.input_box
        passes = 4 if model.config.tta else 1
        out["segmenters"][name] = {
            "params": n_params(model), "weight_bytes": weight_bytes(name), "input_hw": [h, w],
            "gflops_per_forward": gflops(model, torch.zeros(1, 3, h, w)), "forwards_per_image": passes,
            "preprocess": model.config.preprocess, "ms": {"default": [], "one_forward": []}}
    for name, model in clfs.items():
        passes = 4 if getattr(model, "tta", False) else 1  # an ensemble's stored flip-TTA default
        out["classifiers"][name] = {
            "params": n_params(model), "weight_bytes": classifier_bytes(name),
            "gflops_per_image": passes * sum(gflops(m, torch.zeros(1, m.config.in_chans, m.config.input_size,
                                                                   m.config.input_size)) for m in model.members),
            "members": len(model.members), "forwards_per_member": passes, "ms": {"default": [], "one_forward": []}}
    for image, mask in zip(images, masks, strict=True):  # models in turns, so load drifts hit all alike
        for name, model in segs.items():
            for key, tta in (("default", None), ("one_forward", False)):
                t0 = time.perf_counter()
                ss.predict_proba(model, image, tta=tta)
                out["segmenters"][name]["ms"][key].append(1000 * (time.perf_counter() - t0))
        for name, model in clfs.items():
            for key, tta in (("default", None), ("one_forward", False)):
                t0 = time.perf_counter()
                C.predict_proba(model, image, mask, tta=tta)
                out["classifiers"][name]["ms"][key].append(1000 * (time.perf_counter() - t0))
    print(f"{len(images)} val images of {args.data}, {args.threads} thread(s); medians")
    for name, r in out["segmenters"].items():
        r["ms_median"] = {k: float(np.median(v)) for k, v in r.pop("ms").items()}
        size = f"{r['params'] / 1e6:.2f} M params, {r['weight_bytes'] / 1e6:.1f} MB weights"
        print(f"segmenter {name}: {size}, "
              f"{r['gflops_per_forward']:.2f} GFLOPs per forward at {r['input_hw'][0]}x{r['input_hw'][1]} "
              f"x {r['forwards_per_image']} forward(s): {r['ms_median']['default']:.0f} ms per image "
              f"({r['ms_median']['one_forward']:.0f} ms with one forward)")
    for name, r in out["classifiers"].items():
        r["ms_median"] = {k: float(np.median(v)) for k, v in r.pop("ms").items()}
        print(f"classifier {name}: {r['members']} member(s) x {r['forwards_per_member']} forward(s), "
              f"{r['params'] / 1e6:.2f} M params, {r['weight_bytes'] / 1e6:.1f} MB weights, "
              f"{r['gflops_per_image']:.2f} GFLOPs per image: {r['ms_median']['default']:.0f} ms per image "
              f"({r['ms_median']['one_forward']:.0f} ms with one forward per member)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": "python " + " ".join(sys.argv), **out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
