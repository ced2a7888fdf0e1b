"""``skinseg evaluate``: score predicted masks against expert masks (ISIC conventions)."""

from __future__ import annotations

import argparse
import json
import sys

from ._common import EXIT_OK

EPILOG = """\
pairing: files pair by ISIC id (ISIC_<7 digits>) when they carry one, else by stem with
--pred-suffix / --truth-suffix removed. Unpaired files are counted and listed, not scored.

metrics: ISIC challenge conventions (isic-challenge-scoring 5.6.0): per-image Dice, IoU
(Jaccard), thresholded Jaccard (J < 0.65 -> 0), sensitivity, specificity, accuracy, HD95;
macro mean over images with a bootstrap 95 % CI; numbers pooled over all pixels are shown
beside them, labelled. Masks are binarised as pixel > 128 and compared at the truth's size.

exit codes: 0 scored; 2 usage or input error, e.g. a prediction whose size differs from
its truth without --resize-predictions, or no pairs; 1 unexpected error.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predicted masks against expert masks",
        description="Score a folder of predicted masks against a folder of truth masks with the ISIC "
        "challenge conventions. Prints a table (or JSON) on stdout; --out also writes per_image.csv, "
        "summary.json and evaluation.png.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "pred_dir", metavar="PRED_DIR", help="folder of predicted masks (e.g. skinseg segment's OUT_DIR)"
    )
    p.add_argument("truth_dir", metavar="TRUTH_DIR", help="folder of truth masks")
    p.add_argument(
        "--format", choices=["table", "json"], default="table", help="stdout format (default: table)"
    )
    p.add_argument(
        "--out", metavar="DIR", default=None, help="write per_image.csv, summary.json, evaluation.png"
    )
    p.add_argument(
        "--pred-suffix", default="_segmentation", help="stem suffix of predictions (default: _segmentation)"
    )
    p.add_argument(
        "--truth-suffix", default="_segmentation", help="stem suffix of truths (default: _segmentation)"
    )
    p.add_argument(
        "--resize-predictions",
        action="store_true",
        help="resize a prediction to its truth's size (nearest neighbour) instead of failing",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..metrics import evaluate_folders
    from ..report import format_summary_table, write_evaluation_report

    result = evaluate_folders(
        args.pred_dir,
        args.truth_dir,
        pred_suffix=args.pred_suffix,
        truth_suffix=args.truth_suffix,
        resize_predictions=args.resize_predictions,
        progress=not args.quiet,
    )
    summary = result.summary
    n_up, n_ut = len(result.unmatched_predictions), len(result.unmatched_truths)
    paths = write_evaluation_report(result, args.out) if args.out else {}
    if args.format == "json":
        payload = dict(summary)
        payload["unmatched_predictions"] = [str(p) for p in result.unmatched_predictions]
        payload["unmatched_truths"] = [str(p) for p in result.unmatched_truths]
        if paths:
            payload["files"] = {k: str(v) for k, v in paths.items()}
        print(json.dumps(payload, indent=2, allow_nan=False, default=str))
    else:
        print(format_summary_table(summary))
        print(
            f"unmatched: {n_up} predictions without a truth, {n_ut} truths without a prediction"
            + (f"; {summary['n_resized']} predictions resized" if summary.get("n_resized") else "")
        )
    if n_up or n_ut:
        shown = [*result.unmatched_predictions[:3], *result.unmatched_truths[:3]]
        print(
            f"note: {n_up} prediction(s) and {n_ut} truth mask(s) had no partner and were not scored, "
            f"e.g. {', '.join(p.name for p in shown)}",
            file=sys.stderr,
        )
    if paths:
        print(f"report written to {args.out} ({', '.join(p.name for p in paths.values())})", file=sys.stderr)
    return EXIT_OK
