"""Command-line interface: ``skinseg <command> ...`` (also ``python -m skinseg``).

Exit codes: 0 success; 1 unexpected error (traceback shown); 2 usage or input
error (``error: <message>`` on stderr); 3 the run finished but some input files
failed (each is listed with its error in the CSV the command writes).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import SkinsegError
from . import classify, evaluate, export, models, segment, train, train_classifier
from ._common import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_SOME_FAILED"]

_SUBCOMMANDS = {
    "train": train, "segment": segment, "evaluate": evaluate, "export-onnx": export,
    "train-classifier": train_classifier, "classify": classify, "models": models,
}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="skinseg", description="Dermoscopy lesion segmentation, evaluation and classification."
    )
    parser.add_argument("--version", action="version", version=f"skinseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _SUBCOMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return _SUBCOMMANDS[args.command].run(args)
    except SkinsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a full disk, a read-only folder, ...: name the file and the cause
        where = f"'{exc.filename}': " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}. Check that the disk has space and the folder is writable, "
              "then rerun (finished work is kept).", file=sys.stderr)
        return EXIT_USAGE
