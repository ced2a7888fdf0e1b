"""Where the Ray engine's fixed cost goes: one run, phase by phase, with the CPU of each process.

    python benchmarks/ray_startup.py [--data DIR] [--n N] [--workers 2]

Runs what ``skinseg segment IN -o OUT --engine ray --workers 2`` runs, in this process, on the
first N dev images (default all 400), and times each phase from the start of the script:

1. ``import skinseg``, then ``import ray`` and ``ray.data``;
2. ``ray.init`` of a local instance, with the settings skinseg uses for its own instance
   (``address="local"``, no dashboard, ``RAY_USAGE_STATS_ENABLED=0`` for the whole run);
3. :func:`skinseg.runs.segment_folder` with ``engine="ray"`` (the model loaded here and sent to 2
   workers of 0.5 CPU each): the first and the last image's result as the driver receives it;
4. the CPU seconds of every process of this run (the driver, Ray's daemons, Ray Data's actors,
   the workers), read from ``/proc`` before the instance stops;
5. ``ray.shutdown``.

Compare with the local engine's first image (about 1 s: imports and the model) in
``benchmarks/segment_ray.py``, which times both engines as whole commands. Pause other work
while it runs: every phase is CPU-bound.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from _common import DATA_HELP, banner, data_dir, link_images, processes  # noqa: E402


def _tree_cpu(root: int) -> list[tuple[float, int, str]]:
    """(CPU seconds, pid, name) of ``root`` and all its descendants, most CPU first."""
    procs = processes()
    ours = {root}
    for _ in range(4):
        ours |= {pid for pid, (ppid, _, _) in procs.items() if ppid in ours}
    return sorted(((procs[p][1], p, procs[p][2]) for p in ours if p in procs), reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help=f"the 'lesions' dev set ({DATA_HELP})")
    parser.add_argument("--n", type=int, default=None, help="first N images (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (actors) (default 2)")
    args = parser.parse_args(argv)
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks.setdefault(name, time.perf_counter() - T0)

    import skinseg  # noqa: F401

    mark("import skinseg")
    banner(libraries=("numpy", "onnxruntime", "ray"))
    lesions = args.data or data_dir("lesions")
    images = sorted((lesions / "images").glob("*.jpg"))[: args.n]
    work = Path(tempfile.mkdtemp(prefix="skinseg-bench-raystart-"))
    try:
        src = link_images(images, work / "in")
        print(f"input: {len(images)} dev images in {src}", flush=True)
        t_ray = time.perf_counter()
        import ray
        import ray.data  # noqa: F401

        imports_s = time.perf_counter() - t_ray
        from skinseg.inference import Predictor
        from skinseg.runs import RayOptions, segment_folder

        predictor = Predictor.load("default", threads=1)  # what the CLI loads and sends to CPU workers
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # as skinseg does for its own instance
        t_init = time.perf_counter()
        ray.init(address="local", include_dashboard=False, logging_level="WARNING")
        init_s = time.perf_counter() - t_init
        mark("ray.init done")

        def on_result(_result) -> None:
            mark("first image")
            marks["last image"] = time.perf_counter() - T0

        result = segment_folder(predictor, src, work / "out", workers=args.workers, progress=False, engine="ray",
                                ray_options=RayOptions(on_result=on_result))
        mark("run returned")
        table = _tree_cpu(os.getpid())
        t_down = time.perf_counter()
        ray.shutdown()
        shutdown_s = time.perf_counter() - t_down
        mark("ray.shutdown done")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{result.n_ok} images segmented by {args.workers} workers\n")
    print(f"{'phase':<34} {'s from start':>12} {'s':>7}")
    rows = [("import skinseg", marks["import skinseg"], marks["import skinseg"]),
            ("import ray, ray.data", None, imports_s),
            ("ray.init (local instance)", marks["ray.init done"], init_s),
            ("to the first image", marks["first image"], marks["first image"] - marks["ray.init done"]),
            ("to the last image", marks["last image"], marks["last image"] - marks["first image"]),
            ("ray.shutdown", marks["ray.shutdown done"], shutdown_s)]
    for name, at, took in rows:
        print(f"{name:<34} {'' if at is None else f'{at:12.2f}':>12} {took:7.2f}")
    steady = (len(images) - 1) / max(1e-9, marks["last image"] - marks["first image"])
    print(f"\nsteady rate after the first image: {steady:.2f} images/s")
    print("\nCPU seconds per process of this run (before ray.shutdown):")
    for cpu, pid, name in table:
        if cpu >= 0.05:
            print(f"  {cpu:7.2f}  {pid:>7}  {name}")
    print(f"  {sum(c for c, _, _ in table):7.2f}  in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
