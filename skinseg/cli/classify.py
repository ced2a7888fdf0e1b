"""``skinseg classify``: diagnose every lesion image in a folder."""

from __future__ import annotations

import argparse
import functools
import sys
from collections import Counter
from pathlib import Path

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

CSV_FILE = "classification.csv"

EPILOG = """\
outputs (in OUT_DIR):
  classification.csv        one row per image: file, status (ok/error), error_type, error,
                            mask_source, mask_empty, p_<code> for each class of the model,
                            p_melanoma (the melanoma class's probability, whatever its code),
                            predicted_label (a class code), confidence, metadata_used (with
                            --metadata: 1 where the image's row was fused in), then the ABCD measurements
                            (asymmetry_*, border_*, color_*, diameter_*; see docs/measurements.md)
                            unless --no-measure. Numbers have six significant digits; a missing
                            value is an empty cell (as in skinseg segment's results.csv)
  masks/<stem>_mask.png     the predicted lesion masks (without --masks): the masks skinseg
                            segment writes with the same --segmenter
  gradcam/<stem>_gradcam.png  Grad-CAM heatmap of the predicted class over the image (--gradcam;
                            needs torch)
  run.json, journal.jsonl   the settings and the per-image log used to resume: rerun the same
                            command after an interruption and finished images are not redone;
                            a rerun with other settings is refused (--overwrite starts afresh)
  timings.csv               seconds per image

resume: a finished image is not redone while its file keeps its size and modification time;
a file replaced by another of the same size and time is not noticed without --verify-inputs
(a hash of the content). Files at output paths that no skinseg run wrote are never replaced.

The classes, their full names and which are malignant come with the model (its config).
An empty predicted mask (nothing found) is classified on the whole image and flagged in
mask_empty. The classifier runs with ONNX Runtime on the CPU (exported once into the user
cache folder, $SKINSEG_CACHE_DIR or ~/.cache/skinseg), torch on a GPU. It is a research
tool, not a diagnostic device.

engines: --engine ray runs the same job on a Ray cluster (see skinseg segment --help and
docs/scale-out.md); the outputs are the same bytes.

exit codes: 0 all images classified; 3 some files failed (see classification.csv);
2 usage or input error; 1 unexpected error; 130 interrupted (rerun to resume).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="classify the lesion in every image of a folder",
        description="Segment each image with the bundled segmenter (or read --masks), cut the lesion "
        "crop, and predict the probability of each of the classifier's classes, with ABCD measurements.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("in_dir", metavar="IN_DIR")
    p.add_argument("-o", "--out", dest="out_dir", metavar="OUT_DIR", required=True)
    p.add_argument("--classifier", default="default", help=model_help("classifier", "classifier (default: 'default')"))
    p.add_argument(
        "--segmenter", default="default", help=model_help("segmenter", "segmenter for the masks (default: 'default')")
    )
    p.add_argument(
        "--masks",
        default=None,
        metavar="MASK_DIR",
        help="use these masks instead of segmenting (paired by stem + --mask-suffix)",
    )
    p.add_argument("--mask-suffix", default="_segmentation")
    p.add_argument("--gradcam", action="store_true", help="write Grad-CAM overlays to OUT_DIR/gradcam")
    p.add_argument("--no-measure", action="store_true", help="skip the ABCD measurements")
    p.add_argument(
        "--pixel-size-mm", type=float, default=None, help="mm per pixel, for diameter_mm / area_mm2"
    )
    p.add_argument("--metadata", metavar="CSV", default=None,
                   help="patient metadata for a classifier that takes it (classifier-ham10000-7class): a CSV with "
                   "columns file (path relative to IN_DIR, file name or stem), age, sex, site (or localization); "
                   "empty or 'unknown' cells are not known; images without a row are classified from the image "
                   "alone (column metadata_used)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average the classifier over 4 flips; default: as stored in the model (on for "
                   "classifier-ham10000-7class, off for classifier-isic2017-cc0)")
    p.add_argument(
        "--convert", action="store_true", help="convert grayscale / 16-bit inputs instead of failing"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(default: auto)")
    p.add_argument("--threads", type=int, default=None,
                   help="ONNX Runtime (torch on a GPU) threads per model call (default: half the CPUs)")
    add_engine_arguments(p)
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh: remove the outputs of the earlier run in OUT_DIR (only files it "
                   "wrote); files at output paths that no skinseg run wrote are refused, never replaced")
    p.add_argument("--verify-inputs", action="store_true",
                   help="resume by content: redo an input whose content changed although its size and "
                   "modification time did not (a hash of each input is recorded)")
    p.add_argument("--include-runs", action="store_true",
                   help="take the input folder even if it holds an earlier skinseg run (run.json)")
    p.add_argument("--wait", action="store_true",
                   help="if another skinseg run uses OUT_DIR, wait for it instead of exiting")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import csv

    from ..classify import ClassifierPredictor
    from ..inference import Predictor
    from ..runs import check_output_dir, classify_folder

    tune_allocator()  # before any thread starts: a flat peak memory
    if (args.workers is not None and args.workers < 1) or (args.threads is not None and args.threads < 1):
        raise SkinsegError("--workers and --threads must be integers >= 1.")
    options = ray_engine_options(args)
    if options is None:
        check_output_dir(args.in_dir, args.out_dir)  # before any model is loaded or exported
    device = engine_device(args, options)
    threads = args.threads or (options.worker_threads if options is not None else None)
    if args.threads and device != "cpu":
        import torch

        torch.set_num_threads(args.threads)
    cache = cache_dir() if device == "cpu" else None
    # the segment command's model and settings: the same masks; loaded here (and sent to CPU workers)
    segmenter = None if args.masks is not None else functools.partial(
        Predictor.load, args.segmenter, device=device, threads=threads, cache_dir=cache)
    classifier = functools.partial(ClassifierPredictor.load, args.classifier, device=device, threads=threads,
                                   cache_dir=cache)
    try:
        result = classify_folder(
            args.in_dir,
            args.out_dir,
            classifier=classifier,
            segmenter=segmenter,
            masks_dir=args.masks,
            mask_suffix=args.mask_suffix,
            save_gradcam=args.gradcam,
            measure=not args.no_measure,
            pixel_size_mm=args.pixel_size_mm,
            tta=args.tta,
            convert=args.convert,
            overwrite=args.overwrite,
            wait=args.wait,
            progress=not args.quiet,
            include_runs=args.include_runs,
            verify_inputs=args.verify_inputs,
            workers=args.workers,
            engine=args.engine,
            ray_options=options,
            metadata=args.metadata,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished images are saved; rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    from ..runs.storage import is_uri, open_store

    if is_uri(str(result.results_csv)):  # a URI output (--engine ray)
        text = open_store(args.out_dir).read_bytes(CSV_FILE).decode("utf-8")
    else:
        text = Path(result.results_csv).read_text(encoding="utf-8")
    predicted = Counter(r["predicted_label"] for r in csv.DictReader(text.splitlines()) if r["status"] == "ok")
    report_run(result, "classified", {"classified": result.n_ok, "predicted": dict(predicted),
                                      "csv": str(Path(args.out_dir) / CSV_FILE)})
    return EXIT_SOME_FAILED if result.n_failed else EXIT_OK
