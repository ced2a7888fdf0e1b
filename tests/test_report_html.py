"""skinseg.report_html: the self-contained HTML evaluation page, and a real browser opening it."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from skinseg.cli import main
from skinseg.errors import ConfigError
from skinseg.io import write_image, write_mask
from skinseg.metrics import EvaluationResult, evaluate_folders
from skinseg.report_html import (
    PREDICTION_COLOUR,
    TRUTH_COLOUR,
    area_ratio_of,
    precision_of,
    segmentation_label,
    write_html_report,
)
from skinseg.testing import synthetic_lesion

# --------------------------------------------------------------------------- fixtures


def _disk(shape: tuple[int, int], centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2


@pytest.fixture
def study(tmp_path: Path) -> dict[str, Path]:
    """8 synthetic lesions with photos: 2 under-, 2 over-segmented, 1 shifted (mixed), 3 close."""
    d = {k: tmp_path / k for k in ("pred", "truth", "images")}
    shape = (96, 128)
    for i in range(8):
        image, _ = synthetic_lesion(shape, rng=i)
        truth = _disk(shape, (48, 64), 30)
        if i < 2:
            pred = _disk(shape, (48, 64), 18)  # inside the truth: under-segmented
        elif i < 4:
            pred = _disk(shape, (48, 64), 44)  # around the truth: over-segmented
        elif i == 4:
            pred = _disk(shape, (48, 90), 30)  # shifted: misses lesion and covers skin
        else:
            pred = _disk(shape, (48, 64 + i - 5), 30)  # nearly right
        stem = f"ISIC_{i:07d}"
        write_image(d["images"] / f"{stem}.jpg", image)
        write_mask(d["truth"] / f"{stem}_segmentation.png", truth)
        write_mask(d["pred"] / f"{stem}.png", pred)
    return d


class _Page(HTMLParser):
    """Collects what the tests look at: image sources, links, scripts, table rows, gallery cards."""

    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.scripts: list[dict] = []
        self.links: list[dict] = []
        self.cards: list[str] = []
        self.body_rows = 0
        self._in_tbody_of = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a["src"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "script":
            self.scripts.append(a)
        if tag == "link":
            self.links.append(a)
        if tag == "figure":
            self.cards.append(a["id"])
        if tag == "table":
            self._in_tbody_of = a.get("id")
        if tag == "tr" and self._in_tbody_of == "images":
            self.body_rows += 1

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


# --------------------------------------------------------------------------- per-image numbers


def test_labels_precision_and_area_ratio() -> None:
    under = {"tp": 40, "fp": 0, "fn": 60, "sensitivity": 0.4}
    over = {"tp": 100, "fp": 150, "fn": 0, "sensitivity": 1.0}
    mixed = {"tp": 50, "fp": 50, "fn": 50, "sensitivity": 0.5}
    close = {"tp": 90, "fp": 5, "fn": 10, "sensitivity": 0.9}
    empty_pred = {"tp": 0, "fp": 0, "fn": 10, "sensitivity": 0.0}
    empty_truth_fp = {"tp": 0, "fp": 10, "fn": 0, "sensitivity": 1.0}
    both_empty = {"tp": 0, "fp": 0, "fn": 0, "sensitivity": 1.0}
    got = [segmentation_label(r) for r in (under, over, mixed, close, empty_pred, empty_truth_fp, both_empty)]
    assert got == ["under", "over", "mixed", "close", "under", "over", "close"]
    assert precision_of(over) == 0.4 and precision_of(empty_pred) == 1.0
    assert area_ratio_of(under) == 0.4 and area_ratio_of(over) == 2.5
    assert area_ratio_of(empty_truth_fp) == math.inf and area_ratio_of(both_empty) == 1.0


# --------------------------------------------------------------------------- the page


def test_report_page_content(study: dict[str, Path], tmp_path: Path) -> None:
    result = evaluate_folders(study["pred"], study["truth"], image_dir=study["images"], progress=False)
    index = write_html_report(result, tmp_path / "report", worst=5)
    assert index == tmp_path / "report" / "index.html"
    page = _parse(index)
    html = index.read_text(encoding="utf-8")
    # self-contained: no network, no external script or stylesheet
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html)
    assert all("src" not in s for s in page.scripts) and page.links == []
    # every image is a small JPEG beside the page
    assert len(page.srcs) == 5 and all(s.startswith("index_files/") for s in page.srcs)
    for src in page.srcs:
        thumb = cv2.imread(str(index.parent / src))
        assert thumb is not None and max(thumb.shape[:2]) == 256
        assert (index.parent / src).stat().st_size < 40_000
    assert sorted(p.name for p in (index.parent / "index_files").iterdir()) == [
        f"worst-{k:03d}.jpg" for k in range(1, 6)
    ]
    # summary with its aggregation, histogram, sortable table of every image, legend and rule
    assert "macro mean over 8 images (ISIC)" in html and "pooled over all pixels" in html
    assert "95 % CI" in html and "<svg" in html and "Dice per image" in html
    assert page.body_rows == 8 + 1  # header row + one per image
    assert TRUTH_COLOUR in html and PREDICTION_COLOUR in html and "sensitivity &lt; 0.8" in html
    # the gallery: worst first, labelled
    worst = sorted(result.rows, key=lambda r: (r["dice"], r["id"]))[:5]
    assert page.cards == [f"worst-{k}" for k in range(1, 6)]
    cards = re.findall(r'<figure class="card".*?</figure>', html, flags=re.S)
    for card, row in zip(cards, worst, strict=True):
        assert row["id"] in card
        assert f"badge {segmentation_label(row)}" in card
    labels = {r["id"]: segmentation_label(r) for r in result.rows}
    assert labels["ISIC_0000000"] == "under" and labels["ISIC_0000002"] == "over"
    assert labels["ISIC_0000004"] == "mixed" and labels["ISIC_0000006"] == "close"
    assert "neutral grey background" not in html


def test_thumbnail_draws_both_contours_on_the_photo(study: dict[str, Path], tmp_path: Path) -> None:
    result = evaluate_folders(study["pred"], study["truth"], image_dir=study["images"], progress=False)
    index = write_html_report(result, tmp_path / "report", worst=1)
    thumb = cv2.cvtColor(cv2.imread(str(index.parent / "index_files" / "worst-001.jpg")), cv2.COLOR_BGR2RGB)
    assert thumb.shape == (192, 256, 3)  # 96 x 128 scaled to a long side of 256

    def near(colour: str) -> np.ndarray:
        rgb = np.array([int(colour[k : k + 2], 16) for k in (1, 3, 5)])
        return (np.abs(thumb.astype(int) - rgb).max(axis=2) < 40).sum()

    assert near(TRUTH_COLOUR) > 100 and near(PREDICTION_COLOUR) > 100
    # the photo is there: the centre of the lesion is not the neutral grey
    assert np.abs(thumb[96, 128].astype(int) - 217).max() > 20


def test_without_photos_says_so_and_draws_on_grey(study: dict[str, Path], tmp_path: Path) -> None:
    result = evaluate_folders(study["pred"], study["truth"], progress=False)
    index = write_html_report(result, tmp_path / "report", worst=3)
    html = index.read_text(encoding="utf-8")
    assert "3 of the 3 gallery images have no photograph" in html and "--images" in html
    thumb = cv2.imread(str(index.parent / "index_files" / "worst-001.jpg"))
    assert np.abs(thumb[5, 5].astype(int) - 217).max() <= 3  # neutral grey corner


def test_flags_missing_and_zero_one_rows(study: dict[str, Path], tmp_path: Path) -> None:
    (study["pred"] / "ISIC_0000007.png").unlink()
    cv2.imwrite(str(study["pred"] / "ISIC_0000006.png"), _disk((96, 128), (48, 64), 30).astype(np.uint8))
    result = evaluate_folders(study["pred"], study["truth"], missing="empty", progress=False)
    index = write_html_report(result, tmp_path / "report", worst=1)
    html = index.read_text(encoding="utf-8")
    assert "missing prediction (scored as empty)" in html and "{0, 1} prediction" in html
    assert "were scored as an empty prediction" in html and "hold only the values {0, 1}" in html
    assert 'href="#worst-1"' in html  # the missing one is the worst: the table links to its card


def test_rewrite_replaces_and_failure_leaves_no_temp(
    study: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    result = evaluate_folders(study["pred"], study["truth"], progress=False)
    out = tmp_path / "report"
    write_html_report(result, out, worst=4)
    (out / "keep.txt").write_text("mine")
    write_html_report(result, out, worst=2)
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "index_files", "keep.txt"]
    assert len(list((out / "index_files").iterdir())) == 2
    before = (out / "index.html").read_bytes()

    import skinseg.report_html as rh

    def broken(row, side):
        raise OSError(28, "No space left on device", "thumb")

    monkeypatch.setattr(rh, "_thumbnail", broken)
    with pytest.raises(OSError, match="No space"):
        write_html_report(result, out, worst=2)
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "index_files", "keep.txt"]
    assert (out / "index.html").read_bytes() == before and len(list((out / "index_files").iterdir())) == 2


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        write_html_report(EvaluationResult([], {}), "unused")
    row = {"id": "a", "dice": 1.0, "iou": 1.0, "sensitivity": 1.0, "hd95": 0.0, "tp": 1, "fp": 0, "fn": 0}
    with pytest.raises(ConfigError, match="truth_path"):
        write_html_report(EvaluationResult([row], {}), "unused")
    with pytest.raises(ConfigError, match="worst"):
        write_html_report(EvaluationResult([row], {}), "unused", worst=-1)


def test_cli_report_and_images(study: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    args = ["evaluate", str(study["pred"]), str(study["truth"]), "--quiet", "--format", "json"]
    assert main([*args, "--images", str(study["images"]), "--report", str(out), "--worst", "3"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["files"]["html"] == str(out / "index.html") and payload["n_without_image"] == 0
    assert len(_parse(out / "index.html").srcs) == 3


# --------------------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
# Chromium logs every console message of a page as `...:CONSOLE...] "<message>", source: <url> (<line>)`
# (console.log/error/warn and uncaught exceptions alike). The page itself logs nothing, so any such line
# from it is a failure.
CONSOLE_LINE = re.compile(r":CONSOLE[^\]]*\] \"(?P<message>.*)\", source: (?P<source>\S+)")


def _chromium(url: str, tmp_path: Path, *extra: str) -> tuple[str, list[str], float]:
    """Run headless Chromium on ``url``; return its stdout (DOM with --dump-dom), console lines, seconds."""
    profile = tmp_path / f"chromium-profile-{time.monotonic_ns()}"
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    wall = time.perf_counter() - start
    console = [m.group(0) for m in CONSOLE_LINE.finditer(done.stderr)]
    return done.stdout, console, wall


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not on PATH (Debian: apt-get install -y chromium): report not opened in a browser",
)


@needs_chromium
def test_console_error_detection_works(tmp_path: Path) -> None:
    """Positive control: the way the browser test looks for console errors catches a thrown error."""
    page = tmp_path / "throws.html"
    page.write_text('<!DOCTYPE html><html><body><script>throw new Error("boom-7f3a")</script></body></html>')
    _, console, _ = _chromium(page.as_uri(), tmp_path, "--dump-dom")
    assert any("Uncaught Error: boom-7f3a" in line for line in console), console


@needs_chromium
def test_report_loads_in_chromium_without_console_errors(study: dict[str, Path], tmp_path: Path) -> None:
    result = evaluate_folders(study["pred"], study["truth"], image_dir=study["images"], progress=False)
    index = write_html_report(result, tmp_path / "report", worst=6)
    dom, console, _ = _chromium(index.as_uri(), tmp_path, "--dump-dom")
    assert console == []
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    assert 'data-broken-images="0"' in body.group(1)  # every thumbnail decoded
    load_ms = float(re.search(r'data-load-ms="([\d.]+)"', body.group(1)).group(1))
    assert 0 < load_ms < 10_000
    shot = tmp_path / "report.png"
    _, console, _ = _chromium(index.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,1400")
    assert console == []
    png = cv2.imread(str(shot))
    assert png is not None and png.shape[:2] == (1400, 1280)
    # the gallery is in the screenshot: its pixels hold both contour colours
    rgb = cv2.cvtColor(png, cv2.COLOR_BGR2RGB).astype(int)
    for colour in (TRUTH_COLOUR, PREDICTION_COLOUR):
        target = np.array([int(colour[k : k + 2], 16) for k in (1, 3, 5)])
        assert (np.abs(rgb - target).max(axis=2) < 40).sum() > 200, colour


@needs_chromium
def test_table_sorts_in_chromium(study: dict[str, Path], tmp_path: Path) -> None:
    """Click the Dice column title twice (descending) in a copy of the page; the best image comes first."""
    result = evaluate_folders(study["pred"], study["truth"], progress=False)
    index = write_html_report(result, tmp_path / "report", worst=0)
    clicker = (
        "<script>window.addEventListener('load', function () {"
        "var b = document.querySelectorAll('#images th button')[1]; b.click(); b.click();"
        "document.body.dataset.first = document.querySelector('#images tbody tr td').textContent;"
        "});</script></body>"
    )
    probe = index.with_name("probe.html")
    probe.write_text(index.read_text(encoding="utf-8").replace("</body>", clicker), encoding="utf-8")
    dom, console, _ = _chromium(probe.as_uri(), tmp_path, "--dump-dom")
    assert console == []
    best = max(result.rows, key=lambda r: (r["dice"], r["id"]))["id"]
    assert f'data-first="{best}"' in dom
