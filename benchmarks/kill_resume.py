"""Kill `skinseg segment` mid-run with SIGKILL, rerun it, and compare with an uninterrupted run.

    python benchmarks/kill_resume.py [--data DIR] [--n 40] [--model CKPT] [--kill-after 15] [--backend torch]

Steps, on a folder of the first N dev images (copied to a temporary folder):

1. reference: ``python -m skinseg segment IN -o ref`` to the end;
2. killed: the same command into ``killed``, SIGKILLed once its run journal
   (``journal.jsonl``, one line per finished image; ``results.csv`` is only written at
   the end of a run) has ``--kill-after`` lines (the state at the kill is printed:
   complete lines, a partial last line, masks without a line, leftover temporary files);
3. resumed: the same command again into ``killed``, to the end.

Checks: the two folders hold the same files with the same bytes, except the run logs
(``timings.csv``, ``journal.jsonl`` in completion order, and ``run.json`` with the last
run's start time and counts), whose ``run.json`` settings must be equal; and no image was
finished twice: every file has exactly one row in ``timings.csv`` (one is appended each
time an image is finished, across both runs), so the images finished before the kill
were skipped by the rerun. Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import banner, data_dir

RUN_LOGS = ("timings.csv", "journal.jsonl", "run.json")
"""Files of the output folder that log the runs (times, completion order, the last run's counts)."""


def journal_lines(path: Path) -> int:
    """Complete lines of a run journal (one per finished image)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def snapshot(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in RUN_LOGS and ".cache" not in p.parts
    }


def run_settings(out: Path) -> dict:
    return json.loads((out / "run.json").read_text(encoding="utf-8"))["settings"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of images (default: images/ of the lesions dev set, "
                        "$SKINSEG_DATA_DIR or ../shared/data/lesions)")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--model", default="default")
    parser.add_argument("--kill-after", type=int, default=15,
                        help="SIGKILL once this many images are finished (journal lines)")
    parser.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    args = parser.parse_args(argv)
    args.data = args.data or data_dir() / "images"
    banner(libraries=())

    from skinseg.io import list_images

    tmp = Path(tempfile.mkdtemp(prefix="skinseg-kill-"))
    src = tmp / "images"
    src.mkdir()
    for p in list_images(args.data)[: args.n]:
        shutil.copy(p, src / p.name)
    n = len(list(src.iterdir()))

    def command(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "skinseg",
            "segment",
            str(src),
            "-o",
            str(out),
            "--model",
            args.model,
            "--backend",
            args.backend,
            "--quiet",
        ]

    print(f"{n} images; segment command: {shlex.join(command(tmp / 'OUT'))}")
    t0 = time.perf_counter()
    subprocess.run(command(tmp / "ref"), check=True, stdout=subprocess.DEVNULL)
    print(f"reference run: {time.perf_counter() - t0:.1f} s")

    killed = tmp / "killed"
    if args.backend == "onnx":  # share the export so both runs use the same file
        shutil.copytree(tmp / "ref" / ".cache", killed / ".cache")
    proc = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL)
    while proc.poll() is None and journal_lines(killed / "journal.jsonl") < args.kill_after:
        time.sleep(0.005)
    if proc.poll() is not None:
        print("error: the run finished before it could be killed; lower --kill-after", file=sys.stderr)
        return 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    raw = (killed / "journal.jsonl").read_bytes()
    lines_at_kill = raw.count(b"\n")
    partial = bool(raw) and not raw.endswith(b"\n")
    listed = {Path(json.loads(line)["file"]).stem for line in raw.split(b"\n")[:lines_at_kill] if line}
    orphan_masks = [
        p.name for p in killed.glob("*_segmentation.png") if p.stem[: -len("_segmentation")] not in listed
    ]
    temps = [p.name for p in killed.rglob(".*.tmp")]
    print(
        f"killed (SIGKILL) with {lines_at_kill} complete journal lines, partial last line: {partial}, "
        f"{len(orphan_masks)} mask(s) written without a line, {len(temps)} temporary file(s) left"
    )

    t0 = time.perf_counter()
    rerun = subprocess.run(command(killed), capture_output=True, text=True)
    print(f"resumed run: {time.perf_counter() - t0:.1f} s, exit {rerun.returncode}, {rerun.stdout.strip()}")

    ref, got = snapshot(tmp / "ref"), snapshot(killed)
    same_names = sorted(ref) == sorted(got)
    differing = [k for k in ref if k in got and ref[k] != got[k]]
    same_settings = run_settings(tmp / "ref") == run_settings(killed)
    with open(killed / "timings.csv", newline="", encoding="utf-8") as f:
        counts = Counter(r["file"] for r in csv.DictReader(f))
    twice = sorted(k for k, c in counts.items() if c > 1)
    missing = n - len(counts)
    print(
        f"files compared: {len(ref)} (masks, overlays, results.csv; not the run logs {', '.join(RUN_LOGS)}); "
        f"same names: {same_names}; differing bytes: {len(differing)}; "
        f"run.json settings equal: {same_settings}"
    )
    print(
        f"timings.csv: {sum(counts.values())} finish events for {len(counts)} of {n} images; "
        f"finished twice: {len(twice)}; never finished: {missing}"
    )
    ok = (same_names and not differing and same_settings and not twice and not missing
          and rerun.returncode == 0)
    print(
        "RESULT: "
        + ("PASS: byte-identical, no image finished twice" if ok else f"FAIL {differing[:5]} {twice}")
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
