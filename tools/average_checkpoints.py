"""Average the weights of segmenter checkpoints of one architecture (a uniform "model soup").

    python tools/average_checkpoints.py default runs/unet_lite0_ft2/best -o runs/soup

Every checkpoint must have the same architecture, encoder and tensor shapes (for
example fine-tunes of one starting model); the result keeps the first one's config.
Floating-point tensors (weights and BatchNorm statistics) are averaged; integer
tensors (``num_batches_tracked``) are taken from the first. Whether the average is
better must be checked on ``val`` (benchmarks/inference_sweep.py), like any model.
"""

from __future__ import annotations

import argparse
import sys

import torch

import skinseg as ss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="checkpoint folders or bundled names (at least 2)")
    ap.add_argument("-o", "--out", required=True, help="output checkpoint folder")
    args = ap.parse_args()
    if len(args.checkpoints) < 2:
        ap.error("give at least two checkpoints to average")
    models = [ss.load_segmenter(c) for c in args.checkpoints]
    first = models[0]
    keys = ("arch", "encoder_name", "encoder_depth", "decoder_channels")
    for path, m in zip(args.checkpoints[1:], models[1:], strict=True):
        diff = [k for k in keys if getattr(m.config, k) != getattr(first.config, k)]
        if diff:
            print(f"error: '{path}' differs from '{args.checkpoints[0]}' in {diff}; only checkpoints of one "
                  "architecture can be averaged.", file=sys.stderr)
            return 2
    states = [m.state_dict() for m in models]
    avg = {}
    for name, ref in states[0].items():
        if ref.is_floating_point():
            avg[name] = torch.stack([s[name].float() for s in states]).mean(0).to(ref.dtype)
        else:
            avg[name] = ref.clone()
    first.load_state_dict(avg)
    meta = {"averaged_from": list(args.checkpoints), "command": "python " + " ".join(sys.argv),
            "sources_metadata": [m.metadata for m in models]}
    out = ss.save_checkpoint(first, args.out, metadata=meta)
    print(f"averaged {len(models)} checkpoints into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
