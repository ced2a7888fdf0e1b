"""``skinseg segment``: segment a folder of images (resumable)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import SkinsegError
from ._common import EXIT_OK, EXIT_SOME_FAILED, resolve_device

EXIT_INTERRUPTED = 130

EPILOG = """\
outputs (in OUT_DIR):
  <stem><suffix>.png           mask, 8-bit {0, 255}, the input's original size
  overlays/<stem>_overlay.png  green lesion contour on the image (not with --no-overlay)
  results.csv                  one row per image: file, width, height, lesion_area_px,
                               lesion_fraction, bbox_x/y/w/h, mean_prob, status (ok/error),
                               error_type, error. Deterministic: rewritten in input order.
                               With --measure also the ABCD measurements of the lesion:
                               asymmetry*, border_*, color_*, diameter_px, major_axis_px,
                               minor_axis_px, area_px, perimeter_px, diameter_mm, area_mm2
                               (empty for an empty mask; the mm columns need --pixel-size-mm)
  timings.csv                  append-only log: seconds per image and stage, per run
  run.json                     the settings of the run

resume: rerunning the same command skips every image whose results.csv row is 'ok' and
whose mask (and overlay) exist; all others (killed mid-way, or 'error') are redone. A
killed and resumed run ends with the same bytes in masks, overlays and results.csv as an
uninterrupted one. --overwrite starts afresh. Settings (--measure and --pixel-size-mm
included) must match to resume.

bad files (empty, truncated, corrupt, not an image, grayscale or 16-bit without --convert,
transparent, larger than --max-pixels) get an 'error' row and the run goes on.

exit codes: 0 every image segmented; 3 some files failed (see results.csv);
2 usage or input error (message on stderr); 1 unexpected error (traceback);
130 interrupted (Ctrl-C; rerun to resume).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment every image in a folder",
        description="Segment every image in IN_DIR into OUT_DIR: masks, overlays and results.csv. Images are "
        "decoded and written by background threads while the model runs; memory does not grow with the "
        "number of images. Inputs are never modified.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("in_dir", metavar="IN_DIR", help="folder of images (.jpg .jpeg .png .bmp .tif .tiff)")
    p.add_argument(
        "-o",
        "--out",
        dest="out_dir",
        metavar="OUT_DIR",
        required=True,
        help="output folder (created; not IN_DIR or inside it)",
    )
    p.add_argument(
        "--model",
        default="default",
        metavar="PATH_OR_NAME",
        help="checkpoint folder or bundled model name (default: the bundled 'default' model)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold on the lesion probability (default: the model's)",
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average over 4 flips (about 4x slower); default: as stored in the model (on for the "
        "bundled default model)",
    )
    p.add_argument(
        "--hair-removal",
        choices=["dullrazor", "blackhat", "none"],
        default=None,
        help="hair removal before the model (default: as stored in the model)",
    )
    p.add_argument(
        "--denoise",
        choices=["median", "wiener", "none"],
        default=None,
        help="denoising before the model (default: as stored in the model)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(default: auto)")
    p.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx"],
        help="torch, or onnx: ONNX Runtime on the CPU, often faster (uses <model>/model.onnx if it "
        "matches, else exports once to OUT_DIR/.cache/)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument(
        "--workers", type=int, default=2, help="reader threads and writer threads, each (default 2)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch/ONNX Runtime CPU threads (default: torch's)"
    )
    p.add_argument("--no-overlay", dest="overlay", action="store_false", help="do not write overlays")
    p.add_argument("--overwrite", action="store_true", help="start afresh, replacing existing outputs")
    p.add_argument("--recursive", action="store_true", help="include sub-folders (outputs mirror them)")
    p.add_argument(
        "--mask-suffix",
        default="_segmentation",
        help="mask file name is <stem><suffix>.png; input files whose stem ends with it are "
        "skipped as masks (default: _segmentation, ISIC naming)",
    )
    p.add_argument(
        "--convert",
        action="store_true",
        help="accept grayscale (channel replicated) and 16-bit (round(v / 257)) images",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="largest width*height accepted (default 200,000,000); larger files get an error row",
    )
    p.add_argument(
        "--measure",
        action="store_true",
        help="add ABCD measurements (asymmetry, border, colours, diameter) to results.csv; colours "
        "are read from the image the model sees (after any hair removal/denoising)",
    )
    p.add_argument(
        "--pixel-size-mm",
        type=float,
        default=None,
        metavar="MM",
        help="millimetres per pixel, for the diameter_mm and area_mm2 columns (with --measure)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _preprocess_arg(args: argparse.Namespace, model_preprocess: dict) -> object:
    """'model' unless a flag is given; flags override the stored steps one by one."""
    if args.hair_removal is None and args.denoise is None:
        return "model"
    from ..preprocess import PreprocessConfig

    stored = PreprocessConfig.from_dict(model_preprocess) if model_preprocess else PreprocessConfig()
    fields = stored.to_dict()
    for name, value in (("hair_removal", args.hair_removal), ("denoise", args.denoise)):
        new = None if value == "none" else value
        if value is not None and new != fields[name]:
            fields[name] = new
            params = "hair_params" if name == "hair_removal" else "denoise_params"
            fields[params] = {}  # the stored parameters belonged to the replaced step
    return PreprocessConfig.from_dict(fields)


def _onnx_model(model: object, model_arg: str, out_dir: Path) -> object:
    from ..folder import model_fingerprint
    from ..models.checkpoint import bundled_model_dir
    from ..onnx_backend import export_onnx, load_onnx_segmenter

    fingerprint = model_fingerprint(model)
    ckpt = Path(model_arg) if Path(model_arg).is_dir() else bundled_model_dir(model_arg)
    shipped = ckpt / "model.onnx"
    if shipped.is_file():
        onnx_model = load_onnx_segmenter(shipped)
        if onnx_model.source_fingerprint == fingerprint:
            return onnx_model
        print(f"note: '{shipped}' was exported from other weights; exporting a fresh copy", file=sys.stderr)
    cached = out_dir / ".cache" / f"model-{fingerprint[:16]}.onnx"
    if not cached.is_file():
        print(f"exporting the model to ONNX: {cached}", file=sys.stderr, flush=True)
        diff = export_onnx(model, cached, source_fingerprint=fingerprint)
        print(f"ONNX parity: max |p_onnx - p_torch| = {diff:.2e}", file=sys.stderr)
    return load_onnx_segmenter(cached)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..folder import check_output_dir, segment_folder
    from ..io import DEFAULT_MAX_PIXELS
    from ..models import load_segmenter

    if args.batch_size < 1 or args.workers < 1 or (args.threads is not None and args.threads < 1):
        raise SkinsegError("--batch-size, --workers and --threads must be integers >= 1.")
    if args.pixel_size_mm is not None and not args.measure:
        raise SkinsegError(
            "--pixel-size-mm is used only by the measurements; add --measure, or leave it out."
        )
    check_output_dir(args.in_dir, args.out_dir)  # before any export writes into OUT_DIR
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.backend == "onnx":
        if args.device == "cuda":
            raise SkinsegError(
                "--backend onnx runs on the CPU; use --device cpu (or auto), or --backend torch."
            )
        device = "cpu"
    else:
        device = resolve_device(args.device)
    model = load_segmenter(args.model, device=device)
    preprocess = _preprocess_arg(args, model.config.preprocess)
    if args.backend == "onnx":
        model = _onnx_model(model, args.model, Path(args.out_dir))
    try:
        result = segment_folder(
            model,
            args.in_dir,
            args.out_dir,
            threshold=args.threshold,
            tta=args.tta,
            preprocess=preprocess,
            batch_size=args.batch_size,
            workers=args.workers,
            overlay=args.overlay,
            overwrite=args.overwrite,
            recursive=args.recursive,
            mask_suffix=args.mask_suffix,
            convert=args.convert,
            max_pixels=DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels,
            measure=args.measure,
            pixel_size_mm=args.pixel_size_mm,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished images are saved; rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(
        f"{result.n_ok} of {result.n_images} images segmented ({result.n_skipped} complete from an earlier "
        f"run), {result.n_failed} failed; results in {result.results_csv}",
        file=sys.stderr,
    )
    for file, kind, message in result.failed[:10]:
        print(f"  failed: {file}: {kind}: {message}", file=sys.stderr)
    if result.n_failed > 10:
        print(f"  ... and {result.n_failed - 10} more (see results.csv)", file=sys.stderr)
    print(
        json.dumps(
            {
                "images": result.n_images,
                "ok": result.n_ok,
                "failed": result.n_failed,
                "processed": result.n_processed,
                "skipped": result.n_skipped,
                "results": str(result.results_csv),
            }
        )
    )
    return EXIT_SOME_FAILED if result.n_failed else EXIT_OK
