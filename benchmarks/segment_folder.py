"""Benchmark the default ``skinseg segment`` path end to end, each speed lever on its own, model
throughput against the machine's conv ceiling, PNG levels, and peak RSS.

    python benchmarks/segment_folder.py [--data DIR] [--n N] [--model default] [--rss-sizes 50 400]

In one run (the machine is shared and noisy: only numbers from the same run are compared, and
each phase prints how much CPU other processes took):

1. **Plain loop (a)**: what a user would write with smp + PyTorch: per image, default torch
   settings: ``cv2.imread`` -> RGB -> resize to 256x256 -> ImageNet normalisation -> one
   ``network(x)`` under ``torch.no_grad()`` -> sigmoid -> resize back -> ``> 0.5`` ->
   ``cv2.imwrite``. Same weights as the bundled model; no TTA, no overlay.
2. **skinseg segment, default settings (b)**: ``skinseg segment IN -o OUT`` with no flags
   (in-process; the run includes loading the model). It does what the model card says:
   flip TTA (4 flips per image), overlays, clean-up. Ratio (b)/(a): target >= 1.0.
   ``--no-tta`` alone: target >= 3.0.
3. **Each lever on its own**, from the old default (torch, flip TTA as four backend calls of
   8 images, fp32, overlays) through :func:`skinseg.runs.segment_folder` with the same
   settings: TTA in one call (an image's 4 flips together, the default call); ONNX Runtime
   fp32; ONNX Runtime int8 (when the model ships one), and on top of int8 each of TTA in one
   call and two single-threaded calls side by side instead of one two-threaded call; two
   single-threaded fp32 calls side by side; all together = the new default.
4. **Model throughput**: forward passes only at the dev images' padded shape (256x192), calls
   of 4 inputs (an image's 4 flips, the default call), all CPUs, per backend; GFLOP/s (FLOPs of the fp32 network
   from ``torch.utils.flop_counter``, a multiply-add counts 2) as a fraction of the **conv
   ceiling** measured here (a large fp32 channels_last 3x3 convolution).
5. **PNG levels**: encode time and size of overlays and masks at OpenCV compression levels.
6. **Peak RSS** of the default run in a child process (its ``VmHWM``) on the first 50 and on
   all images, and whether torch was imported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from _common import DATA_HELP, banner, data_dir, link_images


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    t = os.times()
    return busy / tick, t.user + t.system + t.children_user + t.children_system


class Phase:
    """Context manager printing how much CPU other processes used during a phase (noise check)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Phase:
        self.start = _cpu_seconds()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, own = _cpu_seconds()
        wall = time.perf_counter() - self.t0
        other = max(0.0, (busy - self.start[0]) - (own - self.start[1]))
        flag = "  <-- NOISY: rerun when the machine is idle" if other > 0.1 * wall else ""
        print(f"    [{self.name}: other processes used {other:.1f} CPU-s in {wall:.1f} s]{flag}", flush=True)


def plain_loop(network, paths: list[Path], out: Path, mean, std) -> float:
    """The straightforward per-image loop; returns seconds."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    network.eval()
    t0 = time.perf_counter()
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        x = torch.from_numpy(((small - mean) / std).transpose(2, 0, 1)).unsqueeze(0)
        with torch.no_grad():
            prob = torch.sigmoid(network(x))[0, 0].numpy()
        prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(out / f"{path.stem}_segmentation.png"), ((prob > 0.5) * 255).astype(np.uint8))
    return time.perf_counter() - t0


class SplitCalls:
    """A backend wrapper that runs a TTA batch as four backend calls (how TTA ran before one-batch TTA)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.device, self.precision = inner.name, inner.device, inner.precision
        self.concurrency = getattr(inner, "concurrency", 1)
        self.threads, self.path = getattr(inner, "threads", None), getattr(inner, "path", None)  # the Backend protocol

    @property
    def config(self):
        return self.inner.config

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self.inner.run(part) for part in np.array_split(batch, 4)])


def conv_ceiling(reps: int = 5) -> float:
    """GFLOP/s of a large fp32 channels_last 3x3 convolution (best of ``reps``)."""
    import torch

    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last).eval()
    x = torch.randn(8, 256, 64, 64).contiguous(memory_format=torch.channels_last)
    flops = 2 * 8 * 256 * 64 * 64 * 256 * 9
    best = float("inf")
    with torch.inference_mode():
        conv(x)
        for _ in range(reps):
            t0 = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def forward_flops(network, shape: tuple[int, ...]) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.zeros(shape))
    return float(counter.get_total_flops())


def throughput(run, x: np.ndarray, reps: int = 5) -> float:
    """Inputs per second of ``run(x)`` (best of ``reps`` after a warm-up)."""
    run(x)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        run(x)
        best = min(best, time.perf_counter() - t0)
    return x.shape[0] / best


def png_levels(images: list[np.ndarray], masks: list[np.ndarray]) -> None:
    print("PNG encode (OpenCV; overlays are RGB, masks 0/255): level, ms per file, KiB per file")
    for level in (0, 1, 3, 6, 9):
        params = [cv2.IMWRITE_PNG_COMPRESSION, level]
        for kind, arrays in (("overlay", images), ("mask", masks)):
            best, size = float("inf"), 0
            for _ in range(3):
                t0 = time.perf_counter()
                size = sum(len(cv2.imencode(".png", a, params)[1]) for a in arrays)
                best = min(best, time.perf_counter() - t0)
            print(f"  level {level} {kind:7s} {best / len(arrays) * 1000:6.2f} ms  {size / len(arrays) / 1024:7.1f} KiB")


def peak_rss(args: list[str]) -> tuple[float, float, bool]:
    """(peak RSS in MiB, seconds, torch imported?) of ``skinseg <args>`` in a child process.

    The child reports its own high-water mark (``VmHWM`` in /proc/self/status, reset by
    exec). ``ru_maxrss`` of a child forked from this (large) process would include the
    parent's memory copied at fork time.
    """
    code = ("import sys; from skinseg.cli import main; rc = main(sys.argv[1:]); "
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
            "print('TORCH', 'torch' in sys.modules, 'HWM', hwm, file=sys.stderr); raise SystemExit(rc)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"error: skinseg {' '.join(args)} failed:\n{proc.stderr}")
    hwm_kib = int(proc.stderr.rsplit("HWM", 1)[1].split()[0])
    return hwm_kib / 1024, time.perf_counter() - t0, "TORCH True" in proc.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help=f"folder of dev images ({DATA_HELP}: lesions/images)")
    parser.add_argument("--n", type=int, default=None, help="first N images (default: all)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--rss-sizes", type=int, nargs="+", default=[50, 400])
    parser.add_argument("--keep", action="store_true", help="keep the temporary output folder")
    args = parser.parse_args()
    banner(libraries=("numpy", "torch", "onnxruntime", "cv2"))
    import torch

    import skinseg as ss
    from skinseg.cli import main as cli
    from skinseg.inference import Predictor, TorchBackend, int8_available, load_backend
    from skinseg.io import list_images
    from skinseg.runs import segment_folder

    data = args.data or data_dir("lesions") / "images"
    paths = list_images(data)[: args.n]
    n = len(paths)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), {os.cpu_count()} CPUs; {n} images "
          f"from {data}; model {args.model}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="skinseg-bench-"))
    subset = tmp / "images"
    link_images(paths, subset)
    model = ss.load_segmenter(args.model)
    cfg = model.config
    network = getattr(model, "network", model)

    with Phase("plain loop"):
        t_plain = plain_loop(network, paths, tmp / "plain", cfg.mean, cfg.std)
    plain = n / t_plain
    print(f"(a) plain smp + PyTorch loop, one forward per image at 256x256: {t_plain:.1f} s, {plain:.2f} img/s")

    def cli_run(name: str, flags: list[str]) -> float:
        out = tmp / name
        with Phase(f"skinseg segment {' '.join(flags) or '(default)'}"):
            t0 = time.perf_counter()
            code = cli(["segment", str(subset), "-o", str(out), "--quiet", *flags])
            dt = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"skinseg segment {' '.join(flags)} exited with {code}")
        ips = n / dt
        print(f"skinseg segment {' '.join(flags) or '(no flags: the default)':26s} {dt:6.1f} s  {ips:6.2f} img/s  "
              f"= {ips / plain:.2f}x the plain loop", flush=True)
        return ips

    default_ips = cli_run("default", [])
    no_tta_ips = cli_run("no_tta", ["--no-tta"])
    print(f"(b) default: {default_ips / plain:.2f}x the plain loop (target >= 1.0, stretch 1.5); "
          f"--no-tta: {no_tta_ips / plain:.2f}x (target >= 3.0)")

    print("\neach lever on its own (segment_folder, flip TTA and overlays on, as the default):")
    threads = os.cpu_count() or 2
    torch_backend = TorchBackend(model)
    onnx_fp32 = load_backend(args.model, backend="onnx", precision="fp32", threads=threads)  # one call at a time
    levers = [("old default: torch fp32, TTA as 4 calls of 8", SplitCalls(torch_backend), 32),
              ("+ TTA in one call (an image's 4 flips; torch fp32)", torch_backend, 4),
              ("+ ONNX Runtime fp32 (TTA as 4 calls of 8)", SplitCalls(onnx_fp32), 32)]
    if int8_available(args.model):
        onnx_int8 = load_backend(args.model, backend="onnx", precision="int8", threads=threads)
        levers.append(("+ ONNX Runtime int8 (TTA as 4 calls of 8)", SplitCalls(onnx_int8), 32))
        # the next two levers on top of int8 (the default precision), each on its own
        levers.append(("+ int8 and TTA in one call (4 inputs)", onnx_int8, 4))
        levers.append(("+ int8 and two 1-thread calls side by side", SplitCalls(load_backend(
            args.model, backend="onnx", precision="int8")), 32))
    levers.append(("+ two 1-thread ONNX fp32 calls side by side (4 calls)", SplitCalls(load_backend(args.model, backend="onnx",
                                                                             precision="fp32")), 32))
    levers.append(("all levers = the new default", load_backend(args.model, backend="auto", precision="auto"), 4))
    for i, (name, backend, batch) in enumerate(levers):
        backend.run(np.zeros((1, 3, *cfg.input_box), np.float32))  # warm-up (and a one-off fp32 export)
        out = tmp / f"lever{i}"
        with Phase(name):
            t0 = time.perf_counter()
            segment_folder(Predictor(backend, batch_size=batch), subset, out, progress=False)
            dt = time.perf_counter() - t0
        print(f"  {name:46s} {n / dt:6.2f} img/s = {n / dt / plain:.2f}x the plain loop", flush=True)

    h, w = cfg.input_box
    flops = forward_flops(network, (1, 3, h, w))
    x = np.random.default_rng(0).standard_normal((4, 3, h, w)).astype(np.float32)
    print()
    with Phase("conv ceiling and model throughput"):
        ceiling = conv_ceiling()
        rows = [("torch fp32 (channels_last)", torch_backend), ("ONNX Runtime fp32", onnx_fp32)]
        if int8_available(args.model):
            rows.append(("ONNX Runtime int8", onnx_int8))
        measured = [(name, throughput(b.run, x)) for name, b in rows]
    print(f"conv ceiling (3x3, 256->256, 8x64x64, fp32 channels_last): {ceiling:.0f} GFLOP/s")
    print(f"model forward: {flops / 1e9:.2f} GFLOP per {h}x{w} input; calls of 4 inputs (an image's 4 flips), "
          f"{threads} threads")
    for name, ips in measured:
        gflops = ips * flops / 1e9
        print(f"  {name:28s} {ips:6.1f} forwards/s  {gflops:6.1f} GFLOP/s (fp32-equivalent) "
              f"= {gflops / ceiling:.2f} of the conv ceiling")

    print()
    sample = [ss.read_image(p) for p in paths[:40]]
    masks = [cv2.imread(str(tmp / "default" / f"{p.stem}_segmentation.png"), cv2.IMREAD_GRAYSCALE) for p in paths[:40]]
    png_levels([cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im in sample], masks)

    print("\npeak RSS of the default `skinseg segment` (child process, its VmHWM):")
    for k in args.rss_sizes:
        k = min(k, n)
        sub = link_images(paths[:k], tmp / f"rss_in_{k}")
        rss, secs, torch_loaded = peak_rss(["segment", str(sub), "-o", str(tmp / f"rss_out_{k}"), "--quiet"])
        print(f"  {k:5d} images: peak RSS {rss:7.1f} MiB ({secs:.1f} s incl. start-up; torch imported: "
              f"{torch_loaded})", flush=True)
    if args.keep:
        print(f"outputs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
