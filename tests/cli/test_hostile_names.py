"""File names that are not UTF-8 or look like spreadsheet formulas, through segment, classify and evaluate.

A name that is not valid UTF-8 is processed and written losslessly (``\\xHH``, see
``skinseg._text``), never a traceback; a CSV cell that a spreadsheet would run as a formula
starts with a single quote; numbers stay numbers.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from skinseg._text import csv_cell, csv_line, name_from_text, text_name
from skinseg.cli import main
from skinseg.io import write_image, write_mask
from skinseg.testing import synthetic_lesion

NOT_UTF8 = os.fsdecode(b"\xff\xfe lesion")  # what os.listdir gives for the bytes b"\xff\xfe lesion"
FORMULAS = ['=HYPERLINK("x")', "+cmd", "@SUM(1)", "-2+3"]
STEMS = [NOT_UTF8, *FORMULAS, "-0.5", "ISIC_0000000"]


def _folder(root: Path, masks: Path | None = None) -> Path:
    root.mkdir()
    for i, stem in enumerate(STEMS):
        image, mask = synthetic_lesion((40, 56), rng=i)
        write_image(root / f"{stem}.jpg", image)
        if masks is not None:
            write_mask(masks / f"{stem}_segmentation.png", mask)
    return root


def _strict_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # raises if a run file is not valid UTF-8


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(_strict_text(path).splitlines()))


def _check_names(cells: list[str], suffix: str = ".jpg") -> None:
    assert sorted(name_from_text(c.removeprefix("'")) for c in cells) == sorted(
        os.fsencode(s + suffix) for s in STEMS)
    by_stem = {c: c for c in cells}
    assert "\\xff\\xfe lesion" + suffix in by_stem  # the documented escape, readable
    for stem in FORMULAS:
        assert "'" + stem + suffix in by_stem  # neutralised the OWASP way
    if suffix:  # "-0.5.jpg" is a name, not a number; the id "-0.5" is a number, harmless
        assert "-0.5" + suffix not in by_stem and "'-0.5" + suffix in by_stem


def test_csv_cells_neutralise_formulas_and_keep_numbers() -> None:
    assert [csv_cell(v) for v in ("=1+1", "+1", "-0.5", "-1e-05", "-inf", "@a", "\tx", "\rx", "a=b", "")] == [
        "'=1+1", "+1", "-0.5", "-1e-05", "-inf", "'@a", "'\tx", "'\rx", "a=b", ""]
    assert [csv_cell(v) for v in (-0.5, 3, None, True)] == [-0.5, 3, "", True]
    assert csv_line(["-2+3", -2.5, "ok"]) == "'-2+3,-2.5,ok\n"


@pytest.mark.parametrize("raw", [b"\xff.jpg", b"a\\xff.jpg", b"caf\xc3\xa9.jpg", b"\\", b"x\xc3",
                                 bytes(range(1, 256))])
def test_names_are_written_losslessly(raw: bytes) -> None:
    text = text_name(os.fsdecode(raw))
    text.encode("utf-8")  # valid text
    assert name_from_text(text) == raw


def test_segment_processes_and_records_hostile_names(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    src = _folder(tmp_path / "in")
    out = tmp_path / "out"
    args = ["segment", str(src), "-o", str(out), "--model", str(tiny_checkpoint), "--backend", "torch",
            "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    rows = _csv(out / "results.csv")
    assert [r["status"] for r in rows] == ["ok"] * len(STEMS)
    _check_names([r["file"] for r in rows])
    for r in rows:  # numeric columns stay numbers
        float(r["lesion_fraction"]), int(r["width"])
    assert (out / f"{NOT_UTF8}_segmentation.png").is_file()
    lines = [json.loads(line) for line in _strict_text(out / "journal.jsonl").splitlines()]
    assert {line["file"] for line in lines} == {s + ".jpg" for s in STEMS}  # JSON keeps the exact name
    _check_names([r["file"] for r in _csv(out / "timings.csv")])
    assert main(args) == 0  # resumes: every image is complete
    assert json.loads(capsys.readouterr().out)["skipped"] == len(STEMS)


def test_formula_names_alone_are_neutralised(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    """Item 12 on its own (all names valid UTF-8): the cells that a spreadsheet would run start with '."""
    src = tmp_path / "in"
    src.mkdir()
    for i, stem in enumerate([*FORMULAS, "-0.5"]):
        write_image(src / f"{stem}.jpg", synthetic_lesion((40, 56), rng=i)[0])
    out = tmp_path / "out"
    assert main(["segment", str(src), "-o", str(out), "--model", str(tiny_checkpoint), "--backend", "torch",
                 "--quiet"]) == 0
    files = sorted(r["file"] for r in _csv(out / "results.csv"))
    assert files == sorted("'" + s + ".jpg" for s in [*FORMULAS, "-0.5"])


def test_classify_writes_hostile_names(tmp_path: Path, capsys) -> None:
    import skinseg.classify as C

    masks = tmp_path / "masks"
    masks.mkdir()
    src = _folder(tmp_path / "in", masks)
    clf = C.save_classifier(C.create_classifier(pretrained=False, input_size=64), tmp_path / "clf")
    out = tmp_path / "cls"
    assert main(["classify", str(src), "-o", str(out), "--classifier", str(clf), "--masks", str(masks),
                 "--quiet"]) == 0
    rows = _csv(out / "classification.csv")
    assert [r["status"] for r in rows] == ["ok"] * len(STEMS)
    _check_names([r["file"] for r in rows])
    assert all(float(r["confidence"]) > 0 for r in rows)


def test_evaluate_writes_hostile_names(tmp_path: Path, capsys) -> None:
    masks, copy = tmp_path / "masks", tmp_path / "truth"
    masks.mkdir()
    copy.mkdir()
    _folder(tmp_path / "in", masks)
    for path in masks.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    report = tmp_path / "report"
    assert main(["evaluate", str(masks), str(copy), "--out", str(report), "--report", str(report),
                 "--quiet"]) == 0
    per_image = _csv(report / "per_image.csv")
    _check_names([r["id"] for r in per_image], suffix="")
    assert all(float(r["dice"]) == 1.0 for r in per_image)
    page = _strict_text(report / "index.html")
    assert "\\xff\\xfe lesion" in page
    json.loads(_strict_text(report / "summary.json"))
