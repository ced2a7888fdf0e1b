"""Issue 25's folder-run rules hold for every job and engine: the one skeleton (``run_folder``) owns them.

Each test runs the ``segment`` and the ``classify`` job on the local engine and on Ray
(local paths; ``ray-uri``: ``local://`` URIs, the object-store listing and output): file
names that are not UTF-8 and names that look like spreadsheet formulas, ``verify_inputs``,
folders holding an earlier run (``include_runs``), and files at output paths that no skinseg
run wrote (never replaced, not even with ``overwrite``). The Ray cases skip without Ray.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import cv2
import pytest

from skinseg._text import name_from_text
from skinseg.errors import ConfigError, OutputExistsError
from skinseg.io import write_image
from skinseg.runs import classify_folder, segment_folder
from skinseg.testing import synthetic_lesion

JOBS = ("segment", "classify")
CSV = {"segment": "results.csv", "classify": "classification.csv"}
NOT_UTF8 = os.fsdecode(b"\xff\xfe lesion")  # what os.listdir gives for the bytes b"\xff\xfe lesion"
FORMULAS = ('=HYPERLINK("x")', "+cmd", "@SUM(1)", "-2+3")
_BOOKKEEPING = {"timings.csv", "journal.jsonl", "run.json", ".skinseg.lock"}


@pytest.fixture(scope="module")
def predictor():
    from skinseg.inference import Predictor

    return Predictor.load("default")


@pytest.fixture(scope="module")
def classifier(tiny_classifier_checkpoint):
    pytest.importorskip("onnx")
    from skinseg.classify import ClassifierPredictor

    return ClassifierPredictor.load(tiny_classifier_checkpoint)  # exported once; Ray workers get its bytes


@pytest.fixture(params=["local", "ray"])
def engine(request) -> str:
    if request.param != "local":
        request.getfixturevalue("ray_local")
    return request.param


@pytest.fixture(params=["local", "ray", "ray-uri"])
def engine_or_uri(request) -> str:
    if request.param != "local":
        request.getfixturevalue("ray_local")
    return request.param


def _run(job: str, engine: str, src: Path, out: Path, predictor, classifier, **kw):
    """``job`` on ``engine`` (``ray-uri``: Ray with ``local://`` URIs for both folders)."""
    if engine == "ray-uri":
        src, out = f"local://{src}", f"local://{out}"
    options = {"engine": "local"} if engine == "local" else {"engine": "ray", "workers": 1}
    if job == "segment":
        return segment_folder(predictor, src, out, progress=False, **options, **kw)
    kw.pop("recursive", None)  # classify takes the top folder only
    return classify_folder(src, out, classifier=classifier, segmenter=predictor, measure=False,
                           progress=False, **options, **kw)


def _images(folder: Path, stems, suffix: str = ".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, stem in enumerate(stems):
        paths.append(folder / f"{stem}{suffix}")
        write_image(paths[-1], synthetic_lesion((40 + 4 * i, 56), rng=i)[0])
    return paths


def _rows(out: Path, job: str) -> list[dict[str, str]]:
    text = (out / CSV[job]).read_bytes().decode("utf-8")  # raises if the CSV is not valid UTF-8
    return list(csv.DictReader(text.splitlines()))


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in _BOOKKEEPING}


def _outputs(job: str, stem: str) -> str:
    return f"{stem}_segmentation.png" if job == "segment" else f"masks/{stem}_mask.png"


@pytest.mark.parametrize("job", JOBS)
def test_hostile_names_are_processed_written_losslessly_and_neutralised(job, engine, predictor, classifier,
                                                                        tmp_path: Path) -> None:
    """Items 5 and 12: a name that is not UTF-8 is processed, written as \\xHH; formula-like names get '."""
    stems = [NOT_UTF8, *FORMULAS, "-0.5", "back\\slash", "ISIC_0000000"]
    src = tmp_path / "in"
    _images(src, stems)
    out = tmp_path / "out"
    result = _run(job, engine, src, out, predictor, classifier)
    assert (result.n_ok, result.n_failed) == (len(stems), 0)
    cells = {r["file"] for r in _rows(out, job)}
    names = sorted(name_from_text(c.removeprefix("'")) for c in cells)
    assert names == sorted(os.fsencode(s + ".jpg") for s in stems)
    assert "\\xff\\xfe lesion.jpg" in cells and "back\\\\slash.jpg" in cells  # the documented escapes
    assert {"'" + s + ".jpg" for s in [*FORMULAS, "-0.5"]} <= cells  # a name, not a number: neutralised
    for stem in stems:
        assert (out / _outputs(job, stem)).is_file()
    for row in _rows(out, job):  # the number columns stay numbers
        float(row["lesion_fraction" if job == "segment" else "confidence"])
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {line["file"] for line in journal} == {s + ".jpg" for s in stems}  # JSON keeps the exact names
    if engine != "local":
        local = tmp_path / "local"
        _run(job, "local", src, local, predictor, classifier)
        assert _snapshot(out) == _snapshot(local)  # the outputs and the CSV: the same bytes
    assert _run(job, engine, src, out, predictor, classifier).n_skipped == len(stems)  # resumes


@pytest.mark.parametrize("job", JOBS)
def test_verify_inputs_redoes_an_input_replaced_with_the_same_size_and_mtime(
        job, engine, predictor, classifier, tmp_path: Path) -> None:
    """Item 4: size and mtime are the documented rule; verify_inputs compares a hash of the content."""
    src = tmp_path / "in"
    _images(src, ["a"])
    first = src / "b.bmp"  # uncompressed: another picture of the same size has the same byte size
    cv2.imwrite(str(first), synthetic_lesion((40, 64), rng=1)[0])
    out = tmp_path / "out"
    assert _run(job, engine, src, out, predictor, classifier, verify_inputs=True).n_ok == 2
    lines = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert all(len(line["input"]) == 3 and line["input"][2].startswith("blake2b:") for line in lines)
    st = first.stat()
    cv2.imwrite(str(first), synthetic_lesion((40, 64), rng=2)[0])  # replaced ...
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... keeping the size and the mtime
    assert (first.stat().st_size, first.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert _run(job, engine, src, out, predictor, classifier).n_processed == 0  # size + mtime only
    done = _run(job, engine, src, out, predictor, classifier, verify_inputs=True)
    assert (done.n_processed, done.n_skipped) == (1, 1)
    assert _run(job, engine, src, out, predictor, classifier, verify_inputs=True).n_processed == 0


@pytest.mark.parametrize("job", JOBS)
def test_verify_inputs_is_refused_for_uri_inputs(job, ray_local, predictor, classifier,
                                                 tmp_path: Path) -> None:
    src = tmp_path / "in"
    _images(src, ["a"])
    with pytest.raises(ConfigError, match="verify_inputs.*URI"):
        _run(job, "ray-uri", src, tmp_path / "out", predictor, classifier, verify_inputs=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("job", JOBS)
def test_folders_holding_an_earlier_run_are_skipped_unless_asked(job, engine_or_uri, predictor, classifier,
                                                                 tmp_path: Path) -> None:
    """Item 2: ``segment P/imgs -o P``, then a run on P does not take the earlier run's outputs for images."""
    project = tmp_path / "P"
    _images(project / "imgs", ["img0", "img1"])
    segment_folder(predictor, project / "imgs", project, progress=False)  # outputs beside the images
    with pytest.raises(ConfigError, match="1 folder.* hold an earlier skinseg run.*--include-runs"):
        _run(job, engine_or_uri, project, tmp_path / "out", predictor, classifier, recursive=True)
    taken = _run(job, engine_or_uri, project, tmp_path / "out2", predictor, classifier, recursive=True,
                 include_runs=True)
    # asked for: segment (recursive) takes imgs/ and the overlays (the masks end in the mask suffix);
    # classify takes the masks beside run.json
    assert taken.n_images == (4 if job == "segment" else 2)
    if job == "segment":
        src = tmp_path / "in"
        _images(src, ["x0"])
        _images(src / "sub", ["x1"])
        shutil.copytree(project, src / "old")  # an earlier run's folder inside the input
        result = _run(job, engine_or_uri, src, tmp_path / "out3", predictor, classifier, recursive=True)
        assert result.n_images == 2 and result.not_taken["skinseg_run"] == 1


@pytest.mark.parametrize("job", JOBS)
def test_foreign_files_at_output_paths_are_never_replaced(job, engine_or_uri, predictor, classifier,
                                                          tmp_path: Path) -> None:
    """Item 4: overwrite replaces only what skinseg wrote; a foreign file is refused before any removal."""
    src = tmp_path / "in"
    _images(src, ["img0"])
    out = tmp_path / "out"
    foreign = out / _outputs(job, "img0")
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"an expert's mask")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="no skinseg run there wrote it"):
            _run(job, engine_or_uri, src, out, predictor, classifier, overwrite=overwrite)
        assert foreign.read_bytes() == b"an expert's mask"
    foreign.unlink()
    (out / CSV[job]).write_text("id,score\nISIC_0000000,0.9\n")  # another program's CSV, no run.json
    with pytest.raises(FileExistsError, match="no skinseg run there wrote it"):
        _run(job, engine_or_uri, src, out, predictor, classifier, overwrite=True)
    (out / CSV[job]).unlink()
    _run(job, engine_or_uri, src, out, predictor, classifier)
    reference = _snapshot(out)
    _images(tmp_path / "later", ["img0", "img1"])[1].rename(src / "img1.jpg")  # new; its output path is taken
    (out / _outputs(job, "img1")).write_bytes(b"an expert's mask")
    with pytest.raises(OutputExistsError, match="not even with --overwrite"):
        _run(job, engine_or_uri, src, out, predictor, classifier, overwrite=True)
    after = _snapshot(out)  # nothing was removed before the refusal
    assert after.pop(_outputs(job, "img1")) == b"an expert's mask" and after == reference
