"""Benchmark folder segmentation end to end, model throughput vs the machine's conv ceiling, and peak RSS.

    python benchmarks/segment_folder.py [--data DIR] [--n N] [--model CKPT] [--rss-sizes 50 400]

In one run (the machine is shared and noisy, so only numbers from the same run are compared):

1. **Plain loop (a)**: what a user would write with smp + PyTorch: for each image, one at a
   time, default torch settings: ``cv2.imread`` -> RGB -> resize to 256x256 -> ImageNet
   normalisation -> NCHW tensor -> ``network(x)`` under ``torch.no_grad()`` -> sigmoid ->
   resize back -> ``> 0.5`` -> ``cv2.imwrite`` PNG. Same network weights as (b).
2. **skinseg segment (b)**: ``skinseg.cli.main(["segment", ...])`` in-process, overlays OFF
   (the plain loop writes no overlay; with overlays is also shown), for each backend; the
   timed run includes loading the model (and, for onnx, the ORT session) but not the one-off
   ONNX export, which a warm-up run caches in OUT_DIR/.cache. Ratio = best (b) / (a).
   Both run one forward per image: (b) passes ``--no-tta``, since the bundled model's
   default flip TTA costs 4 forwards.
3. **Model throughput**: forward passes only, batch 8 at the dev images' padded input
   shape (256x192), torch fp32 channels_last and ONNX Runtime; FLOPs of one forward from
   ``torch.utils.flop_counter`` (a multiply-add counts 2); GFLOP/s as a fraction of the
   **conv ceiling** measured here: a large 3x3 fp32 channels_last convolution (N=8,
   256->256 channels, 64x64).
4. **Peak RSS**: ``skinseg segment`` in a subprocess on the first 50 and on all N images
   (``os.wait4`` ru_maxrss of that child): it should not grow with the number of images.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "lesions" / "images"


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
        print(f"    [{self.name}: other processes used {other:.1f} CPU-s in {wall:.1f} s]{flag}")


def plain_loop(network: torch.nn.Module, paths: list[Path], out: Path, mean, std) -> float:
    """The straightforward per-image loop; returns seconds."""
    out.mkdir(parents=True, exist_ok=True)
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
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


def timed_cli(args: list[str]) -> float:
    from skinseg.cli import main

    t0 = time.perf_counter()
    code = main(args)
    dt = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"error: skinseg {' '.join(args)} exited with {code}")
    return dt


def conv_ceiling(reps: int = 5) -> float:
    """GFLOP/s of a large fp32 channels_last 3x3 convolution (best of ``reps``)."""
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


def forward_flops(network: torch.nn.Module, shape: tuple[int, ...]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.zeros(shape))
    return float(counter.get_total_flops())


def model_throughput(run, x, reps: int = 5) -> float:
    """Images/s of ``run(x)`` (best of ``reps`` after a warm-up)."""
    run(x)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        run(x)
        best = min(best, time.perf_counter() - t0)
    return x.shape[0] / best


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of ``python -m skinseg <args>`` in a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "skinseg", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"error: skinseg {' '.join(args)} exited with {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of dev images")
    parser.add_argument("--n", type=int, default=None, help="first N images (default: all)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--rss-sizes", type=int, nargs="+", default=[50, 400])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary output folder")
    args = parser.parse_args()

    print("command: " + shlex.join([sys.executable, *sys.argv]))
    from skinseg.io import list_images
    from skinseg.models import load_segmenter
    from skinseg.onnx_backend import load_onnx_segmenter

    paths = list_images(args.data)[: args.n]
    n = len(paths)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
        f"{n} images from {args.data}; model {args.model}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="skinseg-bench-"))
    subset = tmp / "images"
    subset.mkdir()
    for p in paths:
        os.symlink(p.resolve(), subset / p.name)
    model = load_segmenter(args.model)
    cfg = model.config
    # a SegmenterEnsemble has no single .network: its forward (logits of the mean probability) stands in
    network = getattr(model, "network", model)
    members = getattr(model, "members", [model])
    print(f"model: {' + '.join(f'{m.config.arch} / {m.config.encoder_name}' for m in members)}, "
          f"input_size {cfg.input_size}, threshold {cfg.threshold}")

    # --- (a) plain loop
    with Phase("plain loop"):
        t_plain = plain_loop(network, paths, tmp / "plain", cfg.mean, cfg.std)
    plain_ips = n / t_plain
    print(f"(a) plain smp + PyTorch loop, one image at a time: {t_plain:.1f} s, {plain_ips:.2f} img/s")

    # --- (b) skinseg segment
    common = [
        "--model",
        args.model,
        "--quiet",
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(args.workers),
        "--no-tta",  # like the plain loop: one forward per image
    ]
    results = {}
    warm = tmp / "warmup"
    warm.mkdir()
    for p in paths[:2]:
        os.symlink(p.resolve(), warm / p.name)
    for backend in ("torch", "onnx"):
        out = tmp / f"seg_{backend}"
        # warm-up on 2 images into the same folder: lazy init, and for onnx the export cached in out/.cache
        timed_cli(["segment", str(warm), "-o", str(out), "--backend", backend, "--no-overlay", *common])
        with Phase(f"segment --backend {backend}"):
            dt = timed_cli(
                ["segment", str(subset), "-o", str(out), "--backend", backend, "--no-overlay", "--overwrite"]
                + common
            )
        results[backend] = n / dt
        print(f"(b) skinseg segment --backend {backend} --no-overlay: {dt:.1f} s, {n / dt:.2f} img/s")
    best = max(results, key=results.get)
    with Phase(f"segment --backend {best} with overlays"):
        dt = timed_cli(
            [
                "segment",
                str(subset),
                "-o",
                str(tmp / f"seg_{best}"),
                "--backend",
                best,
                "--overwrite",
                *common,
            ]
        )
    print(f"    skinseg segment --backend {best} with overlays: {dt:.1f} s, {n / dt:.2f} img/s")
    print(
        f"ratio (b)/(a) = {results[best]:.2f} / {plain_ips:.2f} = {results[best] / plain_ips:.2f}x "
        f"(best backend: {best}; target >= 2.0)"
    )
    agree = []
    for p in paths:
        a = cv2.imread(str(tmp / "plain" / f"{p.stem}_segmentation.png"), cv2.IMREAD_GRAYSCALE) > 0
        b = cv2.imread(str(tmp / f"seg_{best}" / f"{p.stem}_segmentation.png"), cv2.IMREAD_GRAYSCALE) > 0
        agree.append(2 * (a & b).sum() / max(1, a.sum() + b.sum()))
    print(
        f"    Dice between the plain loop's and skinseg's masks: mean {np.mean(agree):.4f} "
        "(skinseg keeps the aspect ratio (256x192) and cleans up the mask)"
    )

    # --- model throughput vs conv ceiling
    from skinseg._geometry import box_hw

    h, w = box_hw(cfg.input_size)
    shape = (args.batch_size, 3, h, w)
    flops = forward_flops(network, (1, 3, h, w))
    net = network.eval().to(memory_format=torch.channels_last)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)

    def torch_run(t):
        with torch.inference_mode():
            return net(t)

    onnx_file = next((tmp / "seg_onnx" / ".cache").glob("*.onnx"))
    ort_model = load_onnx_segmenter(onnx_file)
    xn = x.contiguous().numpy()
    print()
    with Phase("conv ceiling and model throughput"):
        ceiling = conv_ceiling()
        ips_torch = model_throughput(torch_run, x)
        ips_ort = model_throughput(lambda a: ort_model.predict_logits(a), xn)
    print(f"conv ceiling (3x3, 256->256, 8x64x64, fp32 channels_last): {ceiling:.0f} GFLOP/s")
    print(f"model forward: {flops / 1e9:.2f} GFLOP per {h}x{w} image (batch {args.batch_size})")
    for name, ips in (("torch fp32 channels_last", ips_torch), ("onnxruntime", ips_ort)):
        gflops = ips * flops / 1e9
        print(
            f"  {name:<26} {ips:6.1f} img/s  {gflops:6.1f} GFLOP/s  = {gflops / ceiling:.2f} of the ceiling"
        )

    # --- peak RSS vs number of images
    print("\npeak RSS of `python -m skinseg segment` (child process, ru_maxrss):")
    for k in args.rss_sizes:
        k = min(k, n)
        sub = tmp / f"rss_in_{k}"
        sub.mkdir()
        for p in paths[:k]:
            os.symlink(p.resolve(), sub / p.name)
        rss_out = tmp / f"rss_out_{k}"
        if (tmp / f"seg_{best}" / ".cache").is_dir():  # reuse the export: measure segmenting, not exporting
            shutil.copytree(tmp / f"seg_{best}" / ".cache", rss_out / ".cache")
        rss, secs = peak_rss_mb(["segment", str(sub), "-o", str(rss_out), "--backend", best, *common])
        print(f"  {k:5d} images: peak RSS {rss:7.1f} MiB  ({secs:.1f} s incl. start-up, overlays on)")
    if args.keep:
        print(f"outputs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
