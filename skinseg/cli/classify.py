"""``skinseg classify``: diagnose every lesion image in a folder."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from ._common import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED

CSV_FILE = "classification.csv"

EPILOG = """\
outputs (in OUT_DIR):
  classification.csv        one row per image: file, status (ok/error), error_type, error,
                            mask_source, mask_empty, p_<class> for each class, predicted_label,
                            confidence, then the ABCD measurements (asymmetry_*, border_*,
                            color_*, diameter_*; see docs/measurements.md) unless --no-measure
  masks/<stem>_mask.png     the predicted lesion masks (without --masks)
  gradcam/<stem>_gradcam.png  Grad-CAM heatmap of the predicted class over the image (--gradcam)
  run.json, journal.jsonl   the settings and the per-image log used to resume: rerun the same
                            command after an interruption and finished images are not redone;
                            a rerun with other settings is refused (--overwrite starts afresh)
  timings.csv               seconds per image

resume: a finished image is not redone while its file keeps its size and modification time;
a file replaced by another of the same size and time is not noticed without --verify-inputs
(a hash of the content). Files at output paths that no skinseg run wrote are never replaced.

An empty predicted mask (nothing found) is classified on the whole image and flagged in
mask_empty. The classifier is a research tool, not a diagnostic device.

exit codes: 0 all images classified; 3 some files failed (see classification.csv);
2 usage or input error; 1 unexpected error; 130 interrupted (rerun to resume).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="classify the lesion in every image of a folder",
        description="Segment each image with the bundled segmenter (or read --masks), cut the lesion "
        "crop, and predict melanoma / nevus / seborrheic keratosis probabilities with ABCD "
        "measurements.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("in_dir", metavar="IN_DIR")
    p.add_argument("-o", "--out", dest="out_dir", metavar="OUT_DIR", required=True)
    p.add_argument("--classifier", default="default", help="classifier checkpoint directory or 'default'")
    p.add_argument(
        "--segmenter", default="default", help="segmenter for the masks (default: the bundled one)"
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
    p.add_argument("--tta", action="store_true", help="average over flips")
    p.add_argument(
        "--convert", action="store_true", help="convert grayscale / 16-bit inputs instead of failing"
    )
    p.add_argument("--threads", type=int, default=None)
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

    import torch

    from ..classify import load_classifier
    from ..runs import check_output_dir, classify_folder

    if args.threads:
        torch.set_num_threads(args.threads)
    check_output_dir(args.in_dir, args.out_dir)
    classifier = load_classifier(args.classifier)
    segmenter = None
    if args.masks is None:
        from ..models import load_segmenter

        segmenter = load_segmenter(args.segmenter)
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
        )
    except KeyboardInterrupt:
        print("\ninterrupted: finished images are saved; rerun the same command to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    with open(result.results_csv, newline="", encoding="utf-8") as fh:
        predicted = Counter(r["predicted_label"] for r in csv.DictReader(fh) if r["status"] == "ok")
    print(
        json.dumps(
            {
                "images": result.n_images,
                "classified": result.n_ok,
                "failed": result.n_failed,
                "predicted": dict(predicted),
                "csv": str(Path(args.out_dir) / CSV_FILE),
            }
        )
    )
    if result.n_failed:
        print(f"{result.n_failed} file(s) failed; see the error column of {result.results_csv}", file=sys.stderr)
        for file, kind, message in result.failed[:10]:
            print(f"  failed: {file}: {kind}: {message}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK
