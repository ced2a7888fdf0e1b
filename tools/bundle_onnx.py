"""Add the ONNX exports of a bundled segmenter to its folder (the default inference path).

    python tools/bundle_onnx.py [--name default] [--fp32] [--int8 --data ../shared/data/lesions ../shared/data/lesion-classes --n 40]

``--fp32`` writes ``model.onnx`` (float32 compute; the bundled float16 weights are stored
losslessly at half precision, so it is about the size of ``weights.safetensors``).
``--int8`` writes ``model-int8.onnx``, statically quantized with calibration on the first
``--n`` *training* images of each dev set (manifest order) and their flips. Ship the int8
file only after ``benchmarks/backend_accuracy.py`` shows it within the gate on ``val``.
Both files carry the checkpoint's fingerprint, so they are used only with these weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.bundle.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="default", help="bundled segmenter name (default: default)")
    ap.add_argument("--fp32", action="store_true", help="write model.onnx")
    ap.add_argument("--int8", action="store_true", help="write model-int8.onnx (needs --data)")
    ap.add_argument("--data", nargs="+", default=[], help="dev-set folders (manifest.csv); their train split calibrates")
    ap.add_argument("--n", type=int, default=40, help="calibration images per dev set (default 40)")
    args = ap.parse_args()
    if not (args.fp32 or args.int8):
        ap.error("pass --fp32 and/or --int8")
    import skinseg as ss
    from skinseg.data import read_manifest
    from skinseg.inference import MODEL_ONNX_FILE, MODEL_ONNX_INT8_FILE, Predictor, export_onnx_bytes
    from skinseg.inference.quantize import calibration_batches, quantize_onnx
    from skinseg.models.checkpoint import bundled_model_dir, checkpoint_fingerprint

    folder = bundled_model_dir(args.name)
    fingerprint = checkpoint_fingerprint(folder)
    model = ss.load_segmenter(folder)
    data, diff = export_onnx_bytes(model, source_fingerprint=fingerprint)
    print(f"exported {folder.name}: parity max |p_onnx - p_torch| = {diff:.2e}", file=sys.stderr)
    if args.fp32:
        _write(folder / MODEL_ONNX_FILE, data)
        print(f"wrote {folder / MODEL_ONNX_FILE} ({len(data) / 2**20:.1f} MiB)")
    if args.int8:
        if not args.data:
            ap.error("--int8 needs --data (dev-set folders whose train split calibrates)")
        images = []
        for d in args.data:
            images += [ss.read_image(it.image) for it in read_manifest(Path(d), "train")[: args.n]]
        int8 = quantize_onnx(data, calibration_batches(Predictor(model), images))
        _write(folder / MODEL_ONNX_INT8_FILE, int8)
        print(f"wrote {folder / MODEL_ONNX_INT8_FILE} ({len(int8) / 2**20:.1f} MiB; calibrated on {len(images)} "
              "train images and their flips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
