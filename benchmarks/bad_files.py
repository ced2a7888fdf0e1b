"""Run `skinseg segment` on a folder of bad files plus a few good ones and print the results.

    python benchmarks/bad_files.py [--data DIR] [--model CKPT] [--huge 8000]

The folder holds 3 good dev images and: a zero-byte file, a truncated JPEG, a corrupt
JPEG (valid header, garbage data), text and HTML saved as .jpg/.png, a grayscale PNG, a
16-bit PNG, an RGBA PNG with transparency, an opaque RGBA PNG (accepted: the alpha is
dropped losslessly), a 1x1 image, a 1x4000 strip, and a HUGE x HUGE JPEG (default
8000x8000 = 64 MP, under the default 200 MP limit, so it is segmented; memory is
reported). The command runs in a child process (peak RSS from ``os.wait4``), then again
with ``--convert`` (grayscale and 16-bit accepted) and ``--max-pixels 50000000`` (the
huge image is refused cleanly). The CSV rows and exit codes are printed.
"""

from __future__ import annotations

import argparse
import csv
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
from _common import banner, data_dir


def build(folder: Path, data: Path, huge: int) -> None:
    folder.mkdir(parents=True)
    good = sorted(data.glob("*.jpg"))[:3]
    for p in good:
        shutil.copy(p, folder / p.name)
    bgr = cv2.imread(str(good[0]))
    jpg = cv2.imencode(".jpg", bgr)[1].tobytes()
    (folder / "zero_bytes.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (folder / "corrupt.jpg").write_bytes(jpg[:600] + os.urandom(len(jpg) - 600))
    (folder / "notes.jpg").write_text("patient notes, not an image\n")
    (folder / "error_page.png").write_text("<html><body>404 Not Found</body></html>\n")
    cv2.imwrite(str(folder / "grayscale.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "sixteen_bit.png"), bgr.astype(np.uint16) * 257)
    alpha = np.full(bgr.shape[:2], 255, np.uint8)
    cv2.imwrite(str(folder / "rgba_opaque.png"), np.dstack([bgr, alpha]))
    alpha[:40] = 0
    cv2.imwrite(str(folder / "rgba_transparent.png"), np.dstack([bgr, alpha]))
    cv2.imwrite(str(folder / "one_pixel.png"), bgr[:1, :1])
    cv2.imwrite(str(folder / "strip_1x4000.png"), cv2.resize(bgr, (4000, 1)))
    cv2.imwrite(
        str(folder / f"huge_{huge}x{huge}.jpg"),
        cv2.resize(bgr, (huge, huge), interpolation=cv2.INTER_LINEAR),
        [cv2.IMWRITE_JPEG_QUALITY, 90],
    )


def run_rss(command: list[str]) -> tuple[int, float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss / 1024


def show(out: Path) -> None:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if r["status"] == "ok":
            print(
                f"  {r['file']:<24} ok     {r['width']}x{r['height']}, lesion {r['lesion_fraction']}, "
                f"mean_prob {r['mean_prob'] or '-'}"
            )
        else:
            msg = r["error"] if len(r["error"]) < 150 else r["error"][:147] + "..."
            print(f"  {r['file']:<24} error  {r['error_type']}: {msg}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with good .jpg images (default: images/ of the lesions dev set, "
                        "$SKINSEG_DATA_DIR or ../shared/data/lesions)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--huge", type=int, default=8000, help="side of the huge square image (px)")
    args = parser.parse_args(argv)
    args.data = args.data or data_dir() / "images"
    banner(libraries=("numpy", "cv2"))
    tmp = Path(tempfile.mkdtemp(prefix="skinseg-bad-"))
    src = tmp / "bad_files"
    build(src, args.data, args.huge)
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    base = [sys.executable, "-m", "skinseg", "segment", str(src), "--model", args.model, "--quiet"]
    for label, extra in (
        ("default", []),
        ("--convert --max-pixels 50000000", ["--convert", "--max-pixels", "50000000"]),
    ):
        out = tmp / ("out_" + label.split()[0].strip("-"))
        command = [*base, "-o", str(out), *extra]
        print(f"\n$ {shlex.join(command)}")
        code, secs, rss = run_rss(command)
        print(f"exit code {code} (3 = some files failed), {secs:.1f} s, peak RSS {rss:.0f} MiB")
        show(out)
    unchanged = before == {p.name: p.read_bytes() for p in src.iterdir()}
    print(f"\ninputs unchanged: {unchanged}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
