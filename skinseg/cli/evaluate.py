"""``skinseg evaluate``: score predicted masks against expert masks (ISIC conventions)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..errors import ConfigError, MissingPredictionError
from ._common import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

EPILOG = """\
pairing: files pair by ISIC id (a whole ISIC_<7 digits>: ISIC_00066719 is not ISIC_0006671)
when they carry one, else by stem with --pred-suffix / --truth-suffix removed (--images: by
ISIC id or stem). Predictions without a truth are counted and listed, not scored. Only the
files directly in each folder are read: sub-folders and files that are not images are
counted and named in a note. PRED_DIR and TRUTH_DIR must be two different folders.

missing predictions: a truth mask without a prediction is an error (exit 3, the files are
listed), as the ISIC scorer refuses an incomplete submission. --allow-missing scores only the
matched images and says so in the table and the JSON; --missing-as-empty scores each missing
one as an empty prediction (Dice 0). To evaluate a subset of a truth folder (e.g. the test
split), prefer --ids: missing predictions inside the subset are still errors.
  skinseg evaluate pred/ data/masks --truth-suffix '' --ids data/manifest.csv --split test

mask values: files are read as the ISIC scorer reads them (8-bit greyscale, pixel > 128 is
lesion; anti-aliased or JPEG masks work), EXIF orientation applied, compared at the truth's
size. One difference: a file holding only the values {0, 1} is read with 1 = lesion (the
scorer would read it as empty); such files are counted and named in a note. A file with
non-zero values but none above 128 that is not {0, 1} (e.g. {0, 100}) is an error.

metrics: ISIC challenge conventions (isic-challenge-scoring 5.6.0): per-image Dice, IoU
(Jaccard), thresholded Jaccard (J < 0.65 -> 0), sensitivity, specificity, accuracy, HD95;
macro mean over images with a bootstrap 95 % CI; numbers pooled over all pixels are shown
beside them, labelled.

report: --report DIR writes DIR/index.html, a self-contained page (no network) with the
summary, a Dice histogram, the worst --worst images with the truth (blue) and predicted
(orange) contours drawn on the --images photographs (or on grey), labelled under- or
over-segmented, and a sortable table of every image; thumbnails go to DIR/index_files/.
  skinseg evaluate pred/ truth/ --images images/ --report report/

exit codes: 0 scored; 3 truth masks without a prediction (without --allow-missing or
--missing-as-empty); 2 usage or input error, e.g. a prediction whose size differs from its
truth without --resize-predictions, an ambiguous mask, no pairs, or a report folder that
cannot be written; 1 unexpected error.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predicted masks against expert masks",
        description="Score a folder of predicted masks against a folder of truth masks with the ISIC "
        "challenge conventions. Prints a table (or JSON) on stdout; --out also writes per_image.csv, "
        "summary.json and evaluation.png; --report writes an HTML page of where the segmenter fails.",
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
        "--report",
        metavar="DIR",
        default=None,
        help="write DIR/index.html (+ DIR/index_files/): summary, histogram, worst images, sortable table",
    )
    p.add_argument(
        "--images",
        metavar="IMG_DIR",
        default=None,
        help="photographs to draw the worst images on (--report, --out), paired by ISIC id or stem",
    )
    p.add_argument(
        "--worst",
        type=int,
        default=24,
        metavar="N",
        help="number of worst images by Dice in the --report gallery (default: 24)",
    )
    p.add_argument(
        "--pred-suffix", default="_segmentation", help="stem suffix of predictions (default: _segmentation)"
    )
    p.add_argument(
        "--truth-suffix", default="_segmentation", help="stem suffix of truths (default: _segmentation)"
    )
    p.add_argument(
        "--ids",
        metavar="FILE",
        default=None,
        help="evaluate only these ids: a text file with one id per line, or a CSV file with an 'id' column",
    )
    p.add_argument(
        "--split",
        metavar="NAME",
        default=None,
        help="with a CSV --ids file: keep only its rows whose 'split' column is NAME (e.g. test)",
    )
    missing = p.add_mutually_exclusive_group()
    missing.add_argument(
        "--allow-missing",
        action="store_true",
        help="score only the truths that have a prediction (default: a missing prediction is an error)",
    )
    missing.add_argument(
        "--missing-as-empty",
        action="store_true",
        help="score a truth without a prediction as an empty prediction (Dice 0)",
    )
    p.add_argument(
        "--resize-predictions",
        action="store_true",
        help="resize a prediction to its truth's size (nearest neighbour) instead of failing",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def read_ids(path: str, split: str | None) -> list[str]:
    """The ids listed in ``path``: a CSV file with an ``id`` column, else one id per line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"Cannot read the --ids file '{file}': {exc}. Pass a text or CSV file of ids."
        ) from exc
    first = text.splitlines()[0] if text.strip() else ""
    if file.suffix.lower() == ".csv" or "," in first:
        reader = csv.DictReader(text.splitlines())
        fields = reader.fieldnames or []
        if "id" not in fields:
            raise ConfigError(
                f"The --ids file '{file}' is a CSV file without an 'id' column (columns: "
                f"{', '.join(fields)}). Add one, or pass a text file with one id per line."
            )
        rows = list(reader)
        if split is not None:
            if "split" not in fields:
                raise ConfigError(f"--split needs a 'split' column in '{file}'; it has {', '.join(fields)}.")
            splits = sorted({r["split"] for r in rows})
            rows = [r for r in rows if r["split"] == split]
            if not rows:
                raise ConfigError(
                    f"The --ids file '{file}' has no row with split '{split}'; its splits are "
                    f"{', '.join(splits)}. Pick one of them."
                )
        ids = [r["id"].strip() for r in rows if (r["id"] or "").strip()]
    else:
        if split is not None:
            raise ConfigError(
                f"--split needs a CSV --ids file with a 'split' column; '{file}' is a plain list of ids. "
                "Drop --split."
            )
        ids = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not ids:
        raise ConfigError(
            f"The --ids file '{file}' lists no id. Put one id per line, or use a CSV 'id' column."
        )
    return ids


def _missing_message(exc: MissingPredictionError, pred_dir: str) -> str:
    names = [p.name for p in exc.paths]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return (
        f"{len(names)} truth mask(s) have no prediction in '{pred_dir}': {shown}. The ISIC scorer refuses "
        "a submission with missing images. Add the missing predictions, or pass --allow-missing to score "
        "only the matched images, or --missing-as-empty to score them as empty predictions (Dice 0); "
        "to evaluate a subset of the truth folder, pass --ids (and --split)."
    )


def run(args: argparse.Namespace) -> int:
    from ..metrics import evaluate_folders
    from ..report import format_summary_table, write_evaluation_report

    if args.split is not None and args.ids is None:
        raise ConfigError("--split needs --ids FILE (a CSV file with 'id' and 'split' columns).")
    if args.worst < 0:
        raise ConfigError(f"--worst must be >= 0; got {args.worst}.")
    ids = read_ids(args.ids, args.split) if args.ids is not None else None
    missing = "skip" if args.allow_missing else "empty" if args.missing_as_empty else "error"
    try:
        result = evaluate_folders(
            args.pred_dir,
            args.truth_dir,
            pred_suffix=args.pred_suffix,
            truth_suffix=args.truth_suffix,
            resize_predictions=args.resize_predictions,
            missing=missing,
            ids=ids,
            image_dir=args.images,
            progress=not args.quiet,
        )
    except MissingPredictionError as exc:
        print(f"error: {_missing_message(exc, args.pred_dir)}", file=sys.stderr)
        return EXIT_SOME_FAILED
    summary = result.summary
    n_up, n_ut = len(result.unmatched_predictions), len(result.unmatched_truths)

    paths: dict[str, Path] = {}
    for flag, folder in (("--out", args.out), ("--report", args.report)):
        if folder is None:
            continue
        try:
            if flag == "--out":
                paths.update(write_evaluation_report(result, folder))
            else:
                from ..report_html import write_html_report

                paths["html"] = write_html_report(result, folder, worst=args.worst)
        except OSError as exc:
            target = exc.filename or folder
            print(
                f"error: cannot write the report file '{target}': {exc.strerror or exc}. "
                f"Pass {flag} a folder you can write to.",
                file=sys.stderr,
            )
            return EXIT_USAGE

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
        review = summary.get("quality_review")
        if review:  # the predictions came from skinseg segment with a quality estimate
            caught = ", ".join(f"lowest {round(100 * v['share'])} %: {v['failures_caught']}" for v in review["review"])
            auroc = "n/a" if review["auroc"] is None else f"{review['auroc']:.3f}"
            rho = "n/a" if review["spearman"] is None else f"{review['spearman']:.3f}"
            print(f"quality estimate: reviewing the images it ranks lowest catches, of {review['n_failures']} "
                  f"failures (IoU < {review['failure_iou']:g}): {caught}; AUROC {auroc}, Spearman with IoU {rho}")
    if n_up or n_ut:
        shown = [*result.unmatched_predictions[:3], *result.unmatched_truths[:3]]
        print(
            f"note: {n_up} prediction(s) without a truth were not scored and {n_ut} truth mask(s) had no "
            f"prediction ({'scored as empty' if missing == 'empty' else 'not scored'}), "
            f"e.g. {', '.join(p.name for p in shown)}",
            file=sys.stderr,
        )
    if paths:
        where = ", ".join(str(p) for p in paths.values())
        print(f"report written: {where}", file=sys.stderr)
    return EXIT_OK
