"""Benchmark ``skinseg segment --engine ray`` against the local engine on the dev images plus bad files.

    python benchmarks/segment_ray.py [--data DIR] [--n N] [--workers 2] [--keep DIR] [--ray-address auto]

In one run, on one input folder (the first N dev images, default all 400, linked into a
temporary folder, plus five bad files: empty, not an image, truncated JPEG, grayscale,
transparent):

1. **local engine**, default settings: ``skinseg segment IN -o OUT_LOCAL --quiet``;
2. **Ray engine**, default settings, a local Ray instance started by the command, 2 workers
   with fractional CPUs (the default 0.5 each):
   ``skinseg segment IN -o OUT_RAY --engine ray --workers 2 --quiet``.

Each command runs in its own process and is timed from start to exit, so the Ray numbers
include Ray's start-up (the local instance, the actors, the model sent to them) and both
include Python's imports and the model load. The time to the first finished image (the
first journal line) is the start-up; the rate after it is the steady state.

Checks (exit status 1 if one fails):

- every image's mask (and overlay) byte-identical between the engines;
- the bad files recorded the same way (results.csv identical: the same rows, error classes
  and messages);
- Ray throughput including start-up >= 0.8 x the local engine's.

The machine is shared: each phase prints how much CPU processes outside the command's own
process tree (Ray's daemons and workers belong to it) took while it ran; pause other work
for the speed check (the byte comparison holds either way).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA_HELP, REPO_ROOT, banner, data_dir, link_images, processes

RATIO_TARGET = 0.8
BAD_FILES = ("empty.jpg", "notes.png", "truncated.jpg", "grey.png", "transparent.png")


def _is_ray_cluster_process(name: str) -> bool:
    """Ray's daemons and workers by command name (workers rename themselves ``ray::<Actor>``)."""
    return name in ("raylet", "gcs_server") or name.startswith("ray::")


class OtherCpu:
    """CPU seconds used by processes outside one process tree (the command and, e.g., Ray's daemons).

    With ``cluster=True`` (joining a Ray cluster on this machine) the cluster's processes (raylet,
    GCS, ``ray::`` workers and their children) count as the command's: they do its work.
    """

    def __init__(self, root: int, cluster: bool = False) -> None:
        self.root, self.cluster, self.other, self.own, self.ours = root, cluster, 0.0, 0.0, set()
        self._last = processes()

    def sample(self) -> None:
        now = processes()
        for _ in range(2):  # the command's tree: its descendants, however deep (and the cluster's)
            for pid, (ppid, _, name) in now.items():
                if pid == self.root or ppid in self.ours or (self.cluster and _is_ray_cluster_process(name)):
                    self.ours.add(pid)
        for pid, (_, cpu, _) in now.items():
            used = max(0.0, cpu - self._last.get(pid, (0, 0.0 if pid in self.ours else cpu, ""))[1])
            if pid in self.ours:
                self.own += used
            elif pid != os.getpid():
                self.other += used
        self._last = now


def make_input(images: list[Path], folder: Path) -> None:
    """Link the images into ``folder`` and add one bad file of each kind."""
    import cv2
    import numpy as np

    link_images(images, folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"lesion notes, not an image\n")
    data = images[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    image = cv2.imread(str(images[0]))
    cv2.imwrite(str(folder / "grey.png"), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    alpha = np.full(image.shape[:2], 128, np.uint8)
    cv2.imwrite(str(folder / "transparent.png"), np.dstack([image, alpha]))


def run_command(name: str, args: list[str], out: Path, cluster: bool = False) -> dict[str, float]:
    """Run ``python -m skinseg <args>``; return wall seconds, start-up seconds, rc and other CPU use."""
    cmd = [sys.executable, "-m", "skinseg", *args]
    shown = "skinseg " + shlex.join(args)
    print(f"\n[{name}] {shown}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    noise = OtherCpu(proc.pid, cluster)
    journal, first, last, size, next_sample = out / "journal.jsonl", None, None, 0, 0.0
    while proc.poll() is None:
        grown = journal.stat().st_size if journal.is_file() else 0
        if grown > size:  # another image (or batch of images) finished
            size, last = grown, time.perf_counter() - t0
            first = last if first is None else first
        if time.perf_counter() >= next_sample:
            noise.sample()
            next_sample = time.perf_counter() + 0.25
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    noise.sample()
    stdout, stderr = proc.communicate()
    other = noise.other
    own = noise.own  # CPU of the command's tree seen by the samples
    if proc.returncode not in (0, 3):
        print(stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"error: '{shown}' exited with {proc.returncode}")
    noisy = "  <-- NOISY: rerun with the machine idle" if other > 0.1 * wall else ""
    first, last = first or wall, last or wall
    print(f"    exit {proc.returncode}; {wall:.1f} s wall: first image done after {first:.1f} s, last after {last:.1f} s, "
          f"exit {wall - last:.1f} s later; the command (with its Ray processes) used about {own:.1f} CPU-s, other "
          f"processes {other:.1f} CPU-s{noisy}", flush=True)
    return {"wall": wall, "first": first, "last": last, "rc": proc.returncode, "other": other, "own": own}


def compare(local: Path, ray: Path, n_images: int) -> bool:
    """Masks and overlays byte-identical, results.csv identical; print the counts."""
    ok = True
    for kind, pattern in (("masks", "*_segmentation.png"), ("overlays", "overlays/*_overlay.png")):
        a = {p.name: p.read_bytes() for p in local.glob(pattern)}
        b = {p.name: p.read_bytes() for p in ray.glob(pattern)}
        same = sum(1 for k in a if b.get(k) == a[k])
        good = same == len(a) == len(b) == n_images
        ok &= good
        print(f"  {kind}: {len(a)} local, {len(b)} ray, {same} byte-identical -> {'PASS' if good else 'FAIL'}")
    rows_l = (local / "results.csv").read_bytes()
    rows_r = (ray / "results.csv").read_bytes()
    with open(ray / "results.csv", newline="", encoding="utf-8") as f:
        bad = {r["file"]: (r["error_type"], r["error"]) for r in csv.DictReader(f) if r["status"] == "error"}
    print(f"  bad files: {len(bad)} error rows in each ({', '.join(f'{k}: {v[0]}' for k, v in sorted(bad.items()))})")
    good = rows_l == rows_r and set(bad) == set(BAD_FILES)
    ok &= good
    print(f"  results.csv byte-identical (same rows, error classes and messages): {rows_l == rows_r} -> "
          f"{'PASS' if good else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help=f"the 'lesions' dev set ({DATA_HELP})")
    parser.add_argument("--n", type=int, default=None, help="first N images (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (actors) (default 2)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the input and outputs in this new folder")
    parser.add_argument("--ray-address", default=None,
                        help="join this running Ray cluster instead of starting a local instance (e.g. 'auto' after "
                        "`ray start --head --num-cpus 2`): Ray's start-up without the cluster's own")
    args = parser.parse_args(argv)
    data = args.data or data_dir()
    images = sorted((data / "images").glob("*.jpg"))[: args.n]
    if not images:
        raise SystemExit(f"error: no .jpg images in {data / 'images'}")
    banner(libraries=("numpy", "onnxruntime", "ray"), argv=[sys.argv[0], *(argv or sys.argv[1:])])
    root = args.keep or Path(tempfile.mkdtemp(prefix="skinseg-bench-ray-"))
    root.mkdir(parents=True, exist_ok=args.keep is None)
    try:
        src = root / "in"
        make_input(images, src)
        n_total = len(images) + len(BAD_FILES)
        print(f"input: {len(images)} dev images + {len(BAD_FILES)} bad files = {n_total} files in {src}")
        local = run_command("local engine", ["segment", str(src), "-o", str(root / "local"), "--quiet"],
                            root / "local")
        join = ["--ray-address", args.ray_address] if args.ray_address else []
        ray = run_command("Ray engine", ["segment", str(src), "-o", str(root / "ray"), "--engine", "ray",
                                         "--workers", str(args.workers), *join, "--quiet"], root / "ray",
                          cluster=bool(join))
        print("\ncomparison:")
        same = compare(root / "local", root / "ray", len(images))
        print("\nthroughput (all files, start-up included):")
        rates, steady_rates = {}, {}
        for name, r in (("local", local), ("ray", ray)):
            rates[name] = n_total / r["wall"]
            steady = steady_rates[name] = (n_total - 1) / max(1e-9, r["last"] - r["first"])
            print(f"  {name:5s}: {n_total} files in {r['wall']:.1f} s = {rates[name]:.2f} files/s; start-up "
                  f"(to the first image) {r['first']:.1f} s, then {steady:.2f} files/s "
                  f"({steady / (os.cpu_count() or 1):.2f} per core), {r['wall'] - r['last']:.1f} s to exit")
        print(f"  CPU used: local {local['own']:.1f} CPU-s, ray {ray['own']:.1f} CPU-s (sampled every 0.25 s; "
              "short-lived processes are missed)")
        ratio = rates["ray"] / rates["local"]
        fast = ratio >= RATIO_TARGET
        # T = fixed (start-up + exit) + N / steady rate per engine; T_local / T_ray passes the target from N on
        per_l, per_r = 1 / steady_rates["local"], 1 / steady_rates["ray"]
        fixed_l, fixed_r = (r["first"] + r["wall"] - r["last"] for r in (local, ray))
        if per_l > RATIO_TARGET * per_r:
            n_even = (RATIO_TARGET * fixed_r - fixed_l) / (per_l - RATIO_TARGET * per_r)
            print(f"  at these fixed costs ({fixed_l:.1f} s, {fixed_r:.1f} s) and steady rates the ratio reaches "
                  f"{RATIO_TARGET} from about {max(0, math.ceil(n_even))} files")
        else:
            print(f"  at these steady rates the ratio stays below {RATIO_TARGET} however many files")
        print(f"  ray / local = {ratio:.2f} (target >= {RATIO_TARGET}) -> {'PASS' if fast else 'FAIL'}")
        if max(local["other"], ray["other"]) > 0.1 * min(local["wall"], ray["wall"]):
            print("  note: other processes used CPU during the run; the speed numbers are not reliable")
        return 0 if same and fast else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
