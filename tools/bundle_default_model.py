"""Copy a trained checkpoint (or several, as an ensemble) into the package as the bundled default model.

    python tools/bundle_default_model.py runs/unet_lite0/best --threshold 0.5 --tta --val-json val.json [--test-json test.json]
    python tools/bundle_default_model.py runs/a/best runs/b/best --name DIR ...   # a SegmenterEnsemble

Stores float16 weights (loaded back as float32), the chosen decision threshold and
whether flip TTA is on by default, and records the validation (and, for the model card only, test) scores in the
checkpoint's metadata. The threshold and the TTA default must be chosen on validation data.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import skinseg as ss
from skinseg.models.checkpoint import BUNDLED_ROOT, bundled_folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="+", help="one checkpoint, or several to bundle as a SegmenterEnsemble")
    ap.add_argument("--name", default=bundled_folder("default", "segmenter").name)
    ap.add_argument("--threshold", type=float, required=True)
    ap.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                    help="store flip TTA as the model's inference default (choose it on val)")
    ap.add_argument("--val-json", help="output of benchmarks/evaluate_segmenter.py --split val --json")
    ap.add_argument("--test-json", help="output of benchmarks/evaluate_segmenter.py --split test --json")
    ap.add_argument("--note", default="")
    ap.add_argument("--listing", help="JSON file of the model's `skinseg models` entry: title, training_data, "
                                      "licence, headline, card (stored as metadata['bundle'])")
    args = ap.parse_args()
    out_dir = BUNDLED_ROOT / args.name
    if len(args.checkpoint) == 1:
        model = ss.load_segmenter(args.checkpoint[0])
        model.config = model.config.replace(threshold=args.threshold, tta=args.tta)
        meta = dict(model.metadata)
    else:
        model = ss.SegmenterEnsemble([ss.load_segmenter(c) for c in args.checkpoint],
                                     threshold=args.threshold, tta=args.tta)
        meta = {"members": args.checkpoint}
    for key, path in (("dev_val_scores", args.val_json), ("dev_test_scores", args.test_json)):
        if path:
            meta[key] = json.loads(Path(path).read_text())
    if args.listing:
        meta["bundle"] = json.loads(Path(args.listing).read_text())
    if args.note:
        meta["note"] = args.note
    if out_dir.exists():  # replace the old bundle whole, so a single model and an ensemble never mix
        shutil.rmtree(out_dir)
    out = ss.save_checkpoint(model, out_dir, metadata=meta, weights_dtype="float16")
    size = sum(f.stat().st_size for f in out.rglob("weights.safetensors")) / 2**20
    print(f"bundled {args.checkpoint} as {out} ({size:.1f} MiB, threshold {args.threshold}, tta {args.tta})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
