"""``skinseg models``: the bundled models, with architecture, training data, licence and headline score."""

from __future__ import annotations

import argparse
import json
import textwrap

from ._common import EXIT_OK

EPILOG = """\
Select a model by name: skinseg segment IN -o OUT --model NAME, skinseg classify IN -o OUT
--classifier NAME, or skinseg.load_segmenter(NAME) / load_classifier(NAME) / Predictor.load(NAME).
Weights trained on HAM10000 (CC BY-NC 4.0) inherit its non-commercial terms in practice; the
names ending in -cc0 were trained on CC0 data only. Each model's card gives the details.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled models (architecture, data, licence, score)",
                       description="List the models shipped with skinseg.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=["segmenter", "classifier"], default=None, help="only this kind")
    p.add_argument("--format", choices=["text", "json"], default="text")


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import bundled_models

    models = bundled_models(args.kind)
    if args.format == "json":
        print(json.dumps(models, indent=1))
        return EXIT_OK
    for kind in ("segmenter", "classifier"):
        rows = [m for m in models if m["kind"] == kind]
        if not rows:
            continue
        print(f"{kind}s ({'--model' if kind == 'segmenter' else '--classifier'} NAME):")
        shown: set[str] = set()
        for m in rows:  # one entry per model folder, with all its names (default first)
            if m["folder"] in shown:
                continue
            shown.add(m["folder"])
            print("  " + " = ".join([m["name"], *m["aliases"]]))
            for label, key in (("title", "title"), ("architecture", "architecture"), ("trained on", "training_data"),
                               ("licence", "licence"), ("score", "headline"), ("card", "card")):
                if m[key]:
                    print(textwrap.fill(m[key], width=100, initial_indent=f"    {label + ':':<14}",
                                        subsequent_indent=" " * 18))
        print()
    return EXIT_OK
