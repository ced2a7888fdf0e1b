"""Check that two revisions of skinseg write the same outputs (behaviour preserved by a restructuring).

    python benchmarks/same_outputs.py --before e35edec [--after HEAD] [--data DIR] [--only seg_test seg_ex ...]

Checks out both revisions (``git worktree add --detach`` into a temporary folder), then runs,
with each one's code (``PYTHONPATH``; the installed dependencies are shared):

- ``skinseg segment IMAGES -o OUT --backend torch --tta`` on the dev ``test`` images and on
  ``examples/images`` (and once more with ``--measure`` on the examples), and the default
  ``skinseg segment --measure`` (ONNX Runtime, int8) on the ``test`` images;
- ``skinseg classify`` on the dev ``test`` images, on the examples with their expert masks
  (``--masks``), and on the examples with ``--tta --gradcam``.

It compares every file the runs wrote by SHA-256, except the run's own bookkeeping whose
content records times or paths (``run.json``, ``timings.csv``, ``journal.jsonl`` and the
older ``rows.jsonl``, the lock file). Exit 0 when all compared files are byte-identical, 1
otherwise (the differing files are listed). The list of ``skinseg.__all__`` is compared as
well: names may be added, none removed. ``--only`` runs some of the commands (their names are
the output folders listed at the end); ``--diff-columns`` names, for each differing CSV, the
columns whose values differ.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import DATA_HELP, REPO_ROOT, banner, data_dir

BOOKKEEPING = {"run.json", "timings.csv", "journal.jsonl", "rows.jsonl", ".skinseg.lock"}


def commands(test_images: Path, examples: Path) -> dict[str, list[str]]:
    images, masks = examples / "images", examples / "masks"
    return {
        "seg_test": ["segment", str(test_images), "--backend", "torch", "--tta", "--quiet"],
        "seg_test_default": ["segment", str(test_images), "--measure", "--quiet"],  # ONNX Runtime int8
        "seg_ex": ["segment", str(images), "--backend", "torch", "--tta", "--quiet"],
        "seg_ex_measure": ["segment", str(images), "--backend", "torch", "--tta", "--measure", "--quiet"],
        "cls_test": ["classify", str(test_images)],
        "cls_ex": ["classify", str(images), "--masks", str(masks)],
        "cls_ex_tta": ["classify", str(images), "--tta", "--gradcam"],
    }


def checkout(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "--quiet", str(where), rev],
                   check=True)
    return where


def run_all(tree: Path, out: Path, cmds: dict[str, list[str]]) -> list[str]:
    """Run every command with ``tree``'s code; return the public names of ``skinseg``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    for name, args in cmds.items():
        cmd = [sys.executable, "-m", "skinseg", args[0], args[1], "-o", str(out / name), *args[2:]]
        proc = subprocess.run(cmd, env=env, cwd=out, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: {' '.join(cmd)} (code of {tree}) exited with {proc.returncode}:\n"
                             f"{proc.stderr[-2000:]}")
        print(f"  {name}: exit 0", flush=True)
    names = subprocess.run([sys.executable, "-c", "import skinseg; print('\\n'.join(skinseg.__all__))"],
                           env=env, cwd=out, capture_output=True, text=True, check=True).stdout.split()
    return names


def hashes(root: Path) -> dict[str, str]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in BOOKKEEPING:
            found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def differing_columns(before: Path, after: Path) -> list[str]:
    """The columns (by header name) whose values differ in some row of two CSVs of the same files."""
    import csv

    def rows(path: Path) -> dict[str, dict[str, str]]:
        with open(path, newline="", encoding="utf-8") as fh:
            return {r["file"]: r for r in csv.DictReader(fh)}

    a, b = rows(before), rows(after)
    columns = list(dict.fromkeys([*next(iter(a.values()), {}), *next(iter(b.values()), {})]))
    return [c for c in columns if any(a[k].get(c) != b.get(k, {}).get(c) for k in a)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the revision before the change (e.g. a commit)")
    ap.add_argument("--after", default="HEAD", help="the revision after it (default: HEAD)")
    ap.add_argument("--data", default=None, help=f"the 'lesions' dev set ({DATA_HELP})")
    ap.add_argument("--only", nargs="+", default=None, help="run only these commands (e.g. seg_test seg_ex)")
    ap.add_argument("--diff-columns", action="store_true", help="name the differing columns of differing CSVs")
    args = ap.parse_args()
    banner(libraries=("numpy", "torch"))
    data = Path(args.data) if args.data else data_dir("lesions")
    from skinseg.data import read_manifest

    with tempfile.TemporaryDirectory(prefix="skinseg-same-") as tmp_name:
        tmp = Path(tmp_name)
        test_images = tmp / "test_images"
        test_images.mkdir()
        for item in read_manifest(data, "test"):
            os.symlink(item.image.resolve(), test_images / item.image.name)
        trees = {}
        try:
            for label, rev in (("before", args.before), ("after", args.after)):
                trees[label] = checkout(rev, tmp / f"tree_{label}")
            # both revisions read the same example files: the "before" tree's
            cmds = commands(test_images, trees["before"] / "examples")
            if args.only:
                unknown = sorted(set(args.only) - set(cmds))
                if unknown:
                    raise SystemExit(f"error: unknown command(s) {unknown}; choose from {sorted(cmds)}")
                cmds = {k: v for k, v in cmds.items() if k in args.only}
            snaps, names = {}, {}
            for label, tree in trees.items():
                print(f"{label} ({getattr(args, label)}):", flush=True)
                out = tmp / f"out_{label}"
                out.mkdir()
                names[label] = run_all(tree, out, cmds)
                snaps[label] = hashes(out)
            if args.diff_columns:
                csv_columns = {k: differing_columns(tmp / "out_before" / k, tmp / "out_after" / k)
                               for k in snaps["before"] if k.endswith(".csv") and snaps["after"].get(k)
                               and snaps["after"][k] != snaps["before"][k]}
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)],
                               check=False)
    before, after = snaps["before"], snaps["after"]
    differ = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    missing, extra = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
    print(f"\n{len(before)} files before, {len(after)} after (bookkeeping files "
          f"{', '.join(sorted(BOOKKEEPING))} not compared)")
    for folder in cmds:
        keys = [k for k in before if k.startswith(folder + "/")]
        same = sum(1 for k in keys if after.get(k) == before[k])
        print(f"  {folder:15s} {same} of {len(keys)} files byte-identical")
    removed = sorted(set(names["before"]) - set(names["after"]))
    added = sorted(set(names["after"]) - set(names["before"]))
    print(f"skinseg.__all__: {len(names['before'])} names before, {len(names['after'])} after; "
          f"removed {removed or 'none'}; added {added or 'none'}")
    ok = not (differ or missing or extra or removed)
    for title, files in (("differ", differ), ("only before", missing), ("only after", extra)):
        if files:
            print(f"{title}: {len(files)}: " + ", ".join(files[:20]))
    if args.diff_columns:
        for name, cols in sorted(csv_columns.items()):
            print(f"  {name}: columns that differ: {', '.join(cols) or 'none (line endings or order)'}")
    print("PASS: byte-identical outputs" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
