"""``skinseg export-onnx``: export a segmenter to ONNX, with a parity check against torch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import SkinsegError
from ._common import EXIT_OK

EPILOG = """\
The file holds the network (input 'image' (N, 3, H, W) normalised float32, H and W
multiples of 32; output 'logits' (N, 1, H, W)), dynamic batch/height/width, opset 17,
and the model's config in its metadata. Use it with `skinseg segment --backend onnx`
(save it as <checkpoint>/model.onnx to be picked up) or skinseg.inference.OnnxBackend.

parity: the largest difference of lesion probabilities between ONNX Runtime and torch
on random inputs of both orientations is printed; above --tolerance (default 1e-3) the
export fails and nothing is written.

int8: --int8 --calibration IMAGE_DIR writes a statically quantized model (ONNX Runtime
QDQ; weights int8 per channel, activations uint8 calibrated min/max on the first
--calibration-n images of IMAGE_DIR and their flips; the first and the last three
convolutions stay float). Save it as <checkpoint>/model-int8.onnx to be picked up by
`skinseg segment --precision int8` (and by --precision auto). Calibrate on training
images, then check the accuracy on validation data before you rely on it
(benchmarks/backend_accuracy.py).

exit codes: 0 exported; 2 usage error or failed parity check; 1 unexpected error.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export a model to ONNX (fast CPU inference)",
        description="Export a segmenter checkpoint to ONNX and check it against torch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="checkpoint folder or bundled model name ('default')")
    p.add_argument("-o", "--out", required=True, metavar="FILE.onnx", help="destination file")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE.onnx if it exists")
    p.add_argument("--int8", action="store_true", help="quantize to int8 (needs --calibration)")
    p.add_argument("--calibration", metavar="IMAGE_DIR", default=None,
                   help="folder of training images to calibrate the int8 activation ranges on")
    p.add_argument("--calibration-n", type=int, default=64, metavar="N",
                   help="calibration images (the first N of IMAGE_DIR, sorted; default 64)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest allowed probability difference vs torch (default 1e-3)",
    )


def run(args: argparse.Namespace) -> int:
    from ..inference import export_onnx
    from ..models import load_segmenter
    from ..models.checkpoint import checkpoint_fingerprint, resolve_checkpoint

    target = Path(args.out)
    if target.is_dir():
        raise SkinsegError(f"-o '{target}' is a folder; pass a file name such as '{target / 'model.onnx'}'.")
    if target.exists() and not args.overwrite:
        raise SkinsegError(f"'{target}' already exists. Pass --overwrite to replace it, or choose another name.")
    if args.int8 != (args.calibration is not None):
        raise SkinsegError("--int8 needs --calibration IMAGE_DIR (training images), and --calibration needs --int8.")
    ckpt = resolve_checkpoint(args.model)
    model = load_segmenter(ckpt, device="cpu")
    if args.int8:
        diff = _export_int8(model, target, args, checkpoint_fingerprint(ckpt))
    else:
        diff = export_onnx(model, target, opset=args.opset, tolerance=args.tolerance, overwrite=args.overwrite,
                           source_fingerprint=checkpoint_fingerprint(ckpt))
    print(
        f"exported {args.out}; parity: max |p_onnx - p_torch| = {diff:.2e} (tolerance {args.tolerance:g})",
        file=sys.stderr,
    )
    print(json.dumps({"onnx": str(args.out), "max_abs_prob_diff": diff, "opset": args.opset}))
    return EXIT_OK


def _export_int8(model: object, target: Path, args: argparse.Namespace, fingerprint: str) -> float:
    """Export, quantize with calibration images, write atomically; returns the float export's parity."""
    from .._files import atomic_write
    from ..inference import Predictor, export_onnx_bytes
    from ..inference.quantize import calibration_batches, quantize_onnx
    from ..io import list_images, read_image

    paths = list_images(args.calibration)[: max(1, args.calibration_n)]
    if not paths:
        raise SkinsegError(f"No images found in --calibration '{args.calibration}'.")
    images = [read_image(p) for p in paths]
    data, diff = export_onnx_bytes(model, opset=args.opset, tolerance=args.tolerance, source_fingerprint=fingerprint)
    int8 = quantize_onnx(data, calibration_batches(Predictor(model), images))
    atomic_write(target, int8, overwrite=args.overwrite)
    print(f"int8: calibrated on {len(images)} images of '{args.calibration}' and their flips", file=sys.stderr)
    return diff
