"""``skinseg classify`` against ``skinseg segment`` on the same images, in one run: time, peak memory, and both
again with one CPU-bound process beside them.

    python benchmarks/classify_vs_segment.py [--data DIR] [--n 200] [--size 512x384] [--repeats 1]

Copies the first N dev images (``lesions/images``, sorted by name) resized to WxH into a
temporary folder, then runs the two commands as a user does, each in its own process with
default settings:

    python -m skinseg segment IN -o OUT --quiet
    python -m skinseg classify IN -o OUT --quiet

first on an idle machine, then with one busy-loop process (``while True: pass``) beside
them, alternating segment and classify (``--repeats R``: R rounds, the median is reported).
Before the timed runs a warm-up ``classify`` of 2 images makes the classifier's one-time
ONNX export into a temporary cache folder (``SKINSEG_CACHE_DIR``), as a user's first run
does; its time is printed apart.

Reported per command: wall time, peak RSS (the process's own high-water mark ``VmHWM``
plus the largest of its children, ``RUSAGE_CHILDREN``), whether torch was imported, and the
ratios classify / segment (idle and loaded) and loaded / idle. Targets (issue 26): classify
at most 1.5x segment's time, peak at most 500 MiB, at most 1.5x slower with one busy
process beside it. Run it on a quiet machine: the busy process must be the only other load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import DATA_HELP, REPO_ROOT, banner, data_dir

_CHILD = (
    "import resource, sys\n"
    "from skinseg.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"
    "kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "print('STATS', hwm, kids, 'torch' in sys.modules, file=sys.stderr)\n"
    "raise SystemExit(rc)\n"
)
TARGETS = {"classify / segment time": 1.5, "classify peak RSS (MiB)": 500.0, "classify loaded / idle": 1.5}


def prepare_images(src: Path, dst: Path, n: int, size: tuple[int, int]) -> int:
    """The first ``n`` images of ``src`` resized to ``size`` (W, H) as JPEG in ``dst``; how many."""
    import cv2

    import skinseg as ss

    dst.mkdir(parents=True)
    paths = ss.list_images(src)[:n]
    for p in paths:
        image = cv2.resize(ss.read_image(p), size, interpolation=cv2.INTER_AREA)
        ss.write_image(dst / f"{p.stem}.jpg", image)
    return len(paths)


def run_command(args: list[str], env: dict[str, str]) -> dict[str, float | bool]:
    """Wall seconds, peak RSS in MiB (own + largest child) and torch-imported of ``skinseg <args>``."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: skinseg {' '.join(args)} exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
    hwm, kids, torch_loaded = proc.stderr.rsplit("STATS", 1)[1].split()[:3]
    return {"wall": wall, "rss": (int(hwm) + int(kids)) / 1024, "torch": torch_loaded == "True"}


def busy_loop() -> subprocess.Popen:
    """One CPU-bound process (a pure Python busy loop)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help=f"the 'lesions' dev set ({DATA_HELP})")
    parser.add_argument("--n", type=int, default=200, help="images (default 200)")
    parser.add_argument("--size", default="512x384", help="WxH the images are resized to (default 512x384)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of each measurement (median; default 1)")
    parser.add_argument("--classifier", default=None,
                        help="classify with this classifier (a bundled name or folder; default: the default)")
    args = parser.parse_args()
    banner(libraries=("numpy", "onnxruntime", "cv2"))
    w, h = (int(v) for v in args.size.lower().split("x"))
    src = (args.data or data_dir("lesions")) / "images"
    with tempfile.TemporaryDirectory(prefix="skinseg-cls-vs-seg-") as tmp_name:
        tmp = Path(tmp_name)
        n = prepare_images(src, tmp / "in", args.n, (w, h))
        print(f"input: {n} images of {src} resized to {w}x{h} in {tmp / 'in'}", flush=True)
        env = {**os.environ, "SKINSEG_CACHE_DIR": str(tmp / "cache"), "NO_ALBUMENTATIONS_UPDATE": "1",
               "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        warm = tmp / "warm"
        warm.mkdir()
        for p in sorted((tmp / "in").iterdir())[:2]:
            os.symlink(p, warm / p.name)
        extra = {"segment": [], "classify": ["--classifier", str(Path(args.classifier).resolve())
                                             if Path(args.classifier).is_dir() else args.classifier]
                 if args.classifier else []}
        first = run_command(["classify", str(warm), "-o", str(tmp / "warm_out"), "--quiet", *extra["classify"]], env)
        print(f"warm-up: classify of 2 images with the classifier's one-time ONNX export: {first['wall']:.1f} s "
              f"(not in the comparison)", flush=True)
        results: dict[tuple[str, str], list[dict[str, float | bool]]] = {}
        for condition in ("idle", "loaded"):
            busy = busy_loop() if condition == "loaded" else None
            try:
                time.sleep(0.5 if busy else 0.0)
                for r in range(args.repeats):
                    for command in ("segment", "classify"):
                        out = tmp / f"out_{command}_{condition}_{r}"
                        res = run_command([command, str(tmp / "in"), "-o", str(out), "--quiet", *extra[command]], env)
                        results.setdefault((command, condition), []).append(res)
                        print(f"  {condition:6s} {command:8s} round {r + 1}: {res['wall']:7.2f} s, peak "
                              f"{res['rss']:6.1f} MiB, torch imported: {res['torch']}", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()

    def med(command: str, condition: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in results[(command, condition)])

    print(f"\n{n} images {w}x{h}, default settings (classifier: {args.classifier or 'default'}), median of "
          f"{args.repeats} round(s):")
    print(f"  {'command':9s} {'idle s':>8s} {'loaded s':>9s} {'loaded/idle':>12s} {'peak MiB':>9s}")
    for command in ("segment", "classify"):
        idle, loaded = med(command, "idle", "wall"), med(command, "loaded", "wall")
        peak = max(float(r["rss"]) for cond in ("idle", "loaded") for r in results[(command, cond)])
        print(f"  {command:9s} {idle:8.2f} {loaded:9.2f} {loaded / idle:12.2f} {peak:9.1f}")
    measured = {
        "classify / segment time": med("classify", "idle", "wall") / med("segment", "idle", "wall"),
        "classify peak RSS (MiB)": max(float(r["rss"]) for c in ("idle", "loaded") for r in results[("classify", c)]),
        "classify loaded / idle": med("classify", "loaded", "wall") / med("classify", "idle", "wall"),
    }
    print(f"  classify / segment with the busy process: "
          f"{med('classify', 'loaded', 'wall') / med('segment', 'loaded', 'wall'):.2f}")
    print("targets (issue 26):")
    ok = True
    for name, limit in TARGETS.items():
        passed = measured[name] <= limit
        ok &= passed
        print(f"  {name:26s} {measured[name]:8.2f}  (at most {limit:g}: {'PASS' if passed else 'FAIL'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
