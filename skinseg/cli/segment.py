"""``skinseg segment``: segment a folder of images (resumable)."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from ..errors import SkinsegError
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    add_engine_arguments,
    cache_dir,
    engine_device,
    model_help,
    ray_engine_options,
    report_run,
    tune_allocator,
)

EPILOG = """\
outputs (in OUT_DIR):
  <stem><suffix>.png           mask, 8-bit {0, 255}, the input's original size
  overlays/<stem>_overlay.png  green lesion contour on the image (not with --no-overlay);
                               orange-red contour and frame: the mask needs review
  results.csv                  one row per image: file, width, height, lesion_area_px,
                               lesion_fraction, bbox_x/y/w/h, mean_prob, quality,
                               needs_review, status (ok/error), error_type, error.
                               Deterministic: rewritten in input order.
                               quality: the estimated IoU of the mask with an expert's mask
                               (0-1; 0 for an empty mask); needs_review: 1 below the review
                               threshold (--review-below; the bundled models flag about 15 %
                               of validation images). Empty for a model without a fitted
                               estimate (e.g. one from skinseg train).
                               With --measure also the ABCD measurements of the lesion:
                               asymmetry*, border_*, color_*, diameter_px, major_axis_px,
                               minor_axis_px, area_px, perimeter_px, diameter_mm, area_mm2
                               (empty for an empty mask; the mm columns need --pixel-size-mm)
  run.json                     the settings of the run and a summary of the last run
  journal.jsonl                one line per finished image (used to resume)
  timings.csv                  append-only log: seconds per image and stage, per run

resume: rerunning the same command skips every image that finished 'ok' from the same
input file (same size and modification time) and whose mask (and overlay) exist; all
others (killed mid-way, 'error', or a changed input) are redone, and inputs that are gone
are reported and their rows and files removed. An input replaced by another file of the
same size and the same modification time is NOT noticed: pass --verify-inputs to compare
a hash of the content instead (every input is read once more). A killed and resumed run
ends with the same bytes in masks, overlays and results.csv as an uninterrupted one.
--overwrite starts afresh, removing only the files the earlier run wrote; a file that no
skinseg run wrote at an output path (an expert's mask) is never replaced: the run exits 2
naming it. Settings (--measure and --pixel-size-mm included) must match to resume, unless
the earlier run finished no image. One run at a time per OUT_DIR (a second one exits 2
naming the first, or waits with --wait).

inputs: with --recursive, a sub-folder holding an earlier skinseg run (its run.json) is
skipped and counted (its masks and overlays are outputs, not images); --include-runs takes
them. File names that are not UTF-8 are written into results.csv as \\xHH escapes.

bad files (empty, truncated, corrupt, not an image, grayscale or 16-bit without --convert,
transparent, larger than --max-pixels) get an 'error' row and the run goes on.

engines: --engine local (default) runs in this process. --engine ray runs the same job on a
Ray cluster with Ray Data (pip install "skinseg-dermoscopy[ray]"): without --ray-address it
starts a local Ray instance, with one it joins the cluster ("auto" or HOST:PORT). IN_DIR and
OUT_DIR may then also be URIs of any filesystem pyarrow supports (s3://, gs://, abfs://,
local://, ...); workers read the images and write the masks and overlays straight to OUT_DIR.
The outputs are the same bytes, and a run started with one engine resumes with the other.
URI outputs have no lock: run one job per OUT_DIR. See docs/scale-out.md.

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
        help=model_help("segmenter", "segmenter (default: 'default')"),
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
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="auto (default): ONNX Runtime on the CPU, torch on a GPU. onnx uses <model>/model.onnx if it was "
        "exported from these weights, else exports once (needs torch) into the user cache folder "
        "($SKINSEG_CACHE_DIR, default ~/.cache/skinseg)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "int8"],
        help="auto (default): int8 where the model ships an int8 export that passed its accuracy gate (the "
        "bundled model's card says), else fp32. int8 needs the ONNX backend",
    )
    p.add_argument("--batch-size", type=int, default=4,
                   help="model inputs per forward pass; with TTA an image's 4 flips count 4 (default 4: fastest on "
                   "the CPU with the least memory; raise it on a GPU)")
    add_engine_arguments(p)
    p.add_argument(
        "--threads", type=int, default=None, help="torch/ONNX Runtime CPU threads (default: torch's)"
    )
    p.add_argument("--no-overlay", dest="overlay", action="store_false", help="do not write overlays")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh: remove the outputs of the earlier run in OUT_DIR (only files it wrote) and redo "
        "all; files at output paths that no skinseg run wrote are refused, never replaced",
    )
    p.add_argument(
        "--verify-inputs",
        action="store_true",
        help="resume by content: record a hash of each input and redo one whose content changed even if its "
        "size and modification time did not (reads every input once more)",
    )
    p.add_argument(
        "--include-runs",
        action="store_true",
        help="also take images from folders holding an earlier skinseg run (run.json); default: skipped, "
        "counted",
    )
    p.add_argument(
        "--wait", action="store_true", help="if another skinseg run uses OUT_DIR, wait for it instead of exiting"
    )
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
    p.add_argument(
        "--review-below",
        type=float,
        default=None,
        metavar="Q",
        help="flag masks whose quality estimate is below Q (0-1) for review (default: the estimate's own "
        "threshold, chosen on validation images to flag about 15 %%)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _preprocess_arg(args: argparse.Namespace, model_preprocess: dict) -> object:
    """'model' unless a flag is given; flags replace the stored steps one by one."""
    if args.hair_removal is None and args.denoise is None:
        return "model"
    from ..preprocess import PreprocessConfig

    stored = PreprocessConfig.from_dict(model_preprocess) if model_preprocess else PreprocessConfig()
    steps = {name: (None if value == "none" else value)
             for name, value in (("hair_removal", args.hair_removal), ("denoise", args.denoise)) if value is not None}
    return stored.replace_steps(**steps)


def run(args: argparse.Namespace) -> int:
    from ..inference import Predictor
    from ..runs import check_output_dir

    tune_allocator()  # before any thread starts: a flat peak memory
    if args.batch_size < 1 or (args.workers is not None and args.workers < 1) or (
            args.threads is not None and args.threads < 1):
        raise SkinsegError("--batch-size, --workers and --threads must be integers >= 1.")
    if args.pixel_size_mm is not None and not args.measure:
        raise SkinsegError("--pixel-size-mm is used only by the measurements; add --measure, or leave it out.")
    if args.precision == "int8" and args.backend == "torch":
        raise SkinsegError("--precision int8 runs on ONNX Runtime; use --backend onnx (or auto) with it.")
    options = ray_engine_options(args)
    if options is None:
        check_output_dir(args.in_dir, args.out_dir)  # before any model is loaded or exported
    device = "cpu" if args.backend == "onnx" and args.device == "auto" and options is None else engine_device(
        args, options)
    if args.threads and (args.backend == "torch" or (args.backend == "auto" and device != "cpu")):
        import torch

        torch.set_num_threads(args.threads)
    from ..models.checkpoint import read_segmenter_config

    preprocess = _preprocess_arg(args, read_segmenter_config(args.model).preprocess)
    threads = args.threads or (options.worker_threads if options is not None else None)
    # the local engine and CPU workers: the model is loaded here (and sent to Ray workers, who need no model
    # file); GPU workers: each loads it (this machine may have no GPU), with no cache folder of ours
    model = functools.partial(Predictor.load, args.model, backend=args.backend, device=device,
                              precision=args.precision, threads=threads,
                              cache_dir=cache_dir() if device == "cpu" else None, tta=args.tta,
                              batch_size=args.batch_size, preprocess=preprocess)
    return _run_folder(args, model, options)


def _run_folder(args: argparse.Namespace, model: Any, options: Any) -> int:
    """:func:`skinseg.runs.segment_folder` with the output options of the CLI (either engine); the exit code."""
    from ..io import DEFAULT_MAX_PIXELS
    from ..runs import segment_folder

    try:
        result = segment_folder(
            model,
            args.in_dir,
            args.out_dir,
            threshold=args.threshold,
            overlay=args.overlay,
            overwrite=args.overwrite,
            recursive=args.recursive,
            mask_suffix=args.mask_suffix,
            convert=args.convert,
            max_pixels=DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels,
            measure=args.measure,
            pixel_size_mm=args.pixel_size_mm,
            progress=not args.quiet,
            wait=args.wait,
            include_runs=args.include_runs,
            verify_inputs=args.verify_inputs,
            review_below=args.review_below,
            workers=args.workers,
            engine=args.engine,
            ray_options=options,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished images are saved; rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    report_run(result, "segmented", flagged="mask(s) need review (quality estimate below the review threshold; "
                                            "needs_review = 1 in results.csv, orange-red overlays)")
    if result.n_ok and not result.n_flag_decided:  # nothing was estimated: no count of masks to review
        print(f"  no quality estimate ships with '{args.model}' (or it was fitted for other weights): the quality "
              "and needs_review columns are empty (`skinseg models` lists the models that have one)", file=sys.stderr)
    return EXIT_SOME_FAILED if result.n_failed else EXIT_OK
