"""Bundle trained classifier runs into the package as the default classifier (an ensemble).

    python tools/bundle_classifier.py runs/cls/dilated_bbox/best runs/cls/mask_channel/best --scores-json scores.json

Members are stored as float16 safetensors (loaded back as float32). The members
must be chosen on validation data; ``--scores-json`` (output of
benchmarks/evaluate_classifier.py) is only copied into the model card metadata.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import skinseg.classify as C
from skinseg.models.checkpoint import BUNDLED_ROOT, bundled_folder
from skinseg.models.config import prior_decision_weights


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--name", default=bundled_folder("default", "classifier").name)
    ap.add_argument("--scores-json", action="append", default=[], help="KEY=PATH of a JSON with scores")
    ap.add_argument("--temperature", type=float, default=1.0,
                    help="temperature of the mean probabilities, fit on val (benchmarks/classifier_val.py)")
    ap.add_argument("--logit-adjust", type=float, default=0.0, metavar="TAU",
                    help="decision weights (training prior)^-TAU from the first member's recorded training counts: "
                         "the predicted class becomes argmax(p / prior^TAU) (choose TAU on val; 0: plain argmax)")
    ap.add_argument("--tta", action="store_true",
                    help="store flip TTA as the ensemble's default (chosen on val; users can still pass --no-tta)")
    ap.add_argument("--metadata-alpha", type=float, default=None, metavar="ALPHA",
                    help="also store a metadata model (age, sex, site) fitted on the 'train' split of --metadata-data, "
                         "fused with weight ALPHA (choose it on val: benchmarks/classifier_metadata.py)")
    ap.add_argument("--metadata-data", default="../shared/data/ham10000",
                    help="dev-set folder whose manifest.csv has age, sex, localization and label columns")
    ap.add_argument("--note", default="")
    ap.add_argument("--listing", help="JSON file of the model's `skinseg models` entry: title, training_data, "
                                      "licence, headline, card (stored as metadata['bundle'])")
    args = ap.parse_args()
    members = [C.load_classifier(p) for p in args.checkpoints]
    weights = None
    if args.logit_adjust:
        weights = prior_decision_weights(members[0].metadata["training_data"]["counts"], members[0].class_names,
                                         args.logit_adjust)
    metadata_model = None
    if args.metadata_alpha is not None:
        import csv

        from skinseg.models.metadata import fit_metadata_model

        with open(Path(args.metadata_data) / "manifest.csv", newline="", encoding="utf-8") as fh:
            train = [r for r in csv.DictReader(fh) if r["split"] == "train"]
        metadata_model = fit_metadata_model(train, [r["label"] for r in train], members[0].class_names,
                                            alpha=args.metadata_alpha)
    ens = C.ClassifierEnsemble(members, temperature=args.temperature, decision_weights=weights, tta=args.tta,
                               metadata_model=metadata_model)
    meta: dict = {"members": args.checkpoints, "note": args.note, "temperature": args.temperature, "tta": args.tta, "metadata_alpha": args.metadata_alpha,
                  "logit_adjust": args.logit_adjust}
    if args.listing:
        meta["bundle"] = json.loads(Path(args.listing).read_text())
    for item in args.scores_json:
        key, _, path = item.partition("=")
        meta[key] = json.loads(Path(path).read_text())
    out = BUNDLED_ROOT / args.name
    if out.exists():
        shutil.rmtree(out)
    C.save_classifier(ens, out, metadata=meta, weights_dtype="float16")
    size = sum(f.stat().st_size for f in out.rglob("*.safetensors")) / 2**20
    total = sum(f.stat().st_size for f in BUNDLED_ROOT.rglob("*.safetensors")) / 2**20
    print(f"bundled {len(members)} member(s) as {out} ({size:.1f} MiB; all bundled weights {total:.1f} MiB; "
          f"temperature {args.temperature})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
