"""The Ray engine (``segment_folder(..., engine="ray")``, ``skinseg segment --engine ray``) against the local one.

One local Ray instance (2 CPUs) serves the whole test session; the bundled default model
(ONNX Runtime int8) segments small synthetic images. Without Ray these tests skip, except
the ones about Ray being missing. The URI tests use pyarrow's local filesystem and, when
``moto[server]`` is installed, a local S3-compatible server.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from skinseg.errors import ConfigError
from skinseg.io import write_image
from skinseg.runs import RayOptions, segment_folder
from skinseg.testing import synthetic_lesion

REPO = Path(__file__).resolve().parents[2]
_BOOKKEEPING = {"timings.csv", "journal.jsonl", "run.json", ".skinseg.lock"}
@pytest.fixture(scope="module")
def predictor():
    from skinseg.inference import Predictor

    return Predictor.load("default")


def _images(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        image, _ = synthetic_lesion((48 + 5 * (i % 4), 64 - 3 * (i % 3)), rng=i)
        path = folder / f"img{i:02d}.{'png' if i % 2 else 'jpg'}"
        write_image(path, image)
        paths.append(path)
    return paths


def _bad(folder: Path) -> dict[str, str]:
    image, _ = synthetic_lesion((40, 56), rng=99)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_bytes(b"lesion notes, not an image\n")
    png = cv2.imencode(".png", image)[1].tobytes()
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    return {"empty.jpg": "EmptyFileError", "notes.png": "NotAnImageError", "cut.png": "TruncatedImageError"}


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in _BOOKKEEPING}


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _settings(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["settings"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, predictor) -> tuple[Path, Path]:
    """(input folder with 6 images and 3 bad files, the local engine's output for it)."""
    root = tmp_path_factory.mktemp("ray")
    src = root / "in"
    _images(src, 6)
    _bad(src)
    ref = root / "local"
    segment_folder(predictor, src, ref, progress=False)
    return src, ref


# --------------------------------------------------------------------------- same outputs as the local engine


def test_same_masks_rows_and_settings_as_the_local_engine(ray_local, folder, tmp_path: Path) -> None:
    src, ref = folder
    out = tmp_path / "ray"
    seen = []
    result = segment_folder("default", src, out, engine="ray", progress=False,
                            ray_options=RayOptions(rows_per_batch=2), workers=2)
    assert (result.n_images, result.n_ok, result.n_failed) == (9, 6, 3)
    assert _snapshot(out) == _snapshot(ref)  # masks, overlays and results.csv: the same bytes
    rows = {r["file"]: r for r in _rows(out)}
    for name, error in _bad(tmp_path).items():
        assert rows[name]["error_type"] == error and str(src / name) in rows[name]["error"]
    assert _settings(out) == _settings(ref)  # the engine is not a setting: either can resume the other
    seen = [json.loads(line)["file"] for line in (out / "journal.jsonl").read_text().splitlines()]
    assert sorted(seen) == sorted(rows)
    assert not list(out.rglob("*.tmp"))


def test_resume_a_partial_run_and_across_engines(ray_local, predictor, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _images(src, 4)
    out = tmp_path / "out"
    segment_folder(predictor, src, out, progress=False)  # the local engine did 4 images
    _images(src, 3, start=4)
    (out / "img01_segmentation.png").unlink()  # an output that went missing: redone
    stale = out / ".img05_segmentation.png.0123456789ab.tmp"
    stale.write_bytes(b"half a png")  # left by a killed writer
    done = []
    result = segment_folder("default", src, out, engine="ray", progress=False,
                            ray_options=RayOptions(rows_per_batch=2, on_result=lambda r: done.append(r.key)))
    assert sorted(done) == ["img01.png", "img04.jpg", "img05.png", "img06.jpg"]
    assert (result.n_skipped, result.n_processed, result.n_ok) == (3, 4, 7)
    reference = tmp_path / "reference"
    segment_folder(predictor, src, reference, progress=False)
    assert _snapshot(out) == _snapshot(reference) and not stale.exists()
    again = segment_folder("default", src, out, engine="ray", progress=False)
    assert (again.n_skipped, again.n_processed) == (7, 0)  # nothing left: Ray is not even asked
    with pytest.raises(ConfigError, match="other settings"):
        segment_folder("default", src, out, engine="ray", threshold=0.3, progress=False)


def test_a_worker_whose_model_differs_stops_the_run(ray_local, tmp_path: Path) -> None:
    src = tmp_path / "in"
    _images(src, 2)
    driver = os.getpid()

    def load():  # another TTA setting on the workers than here: outputs would be mixed
        from skinseg.inference import OnnxBackend, Predictor
        from skinseg.models.checkpoint import resolve_checkpoint

        data = (resolve_checkpoint("default") / "model-int8.onnx").read_bytes()  # in memory: each worker loads
        return Predictor(OnnxBackend(data), tta=os.getpid() == driver)

    with pytest.raises(ConfigError, match="differs from the driver's.*tta"):
        segment_folder(load, src, tmp_path / "out", engine="ray", workers=1, progress=False)


def test_cli_engine_ray(ray_local, folder, tmp_path: Path, capsys) -> None:
    from skinseg.cli import main

    src, ref = folder
    out = tmp_path / "cli"
    assert main(["segment", str(src), "-o", str(out), "--engine", "ray", "--workers", "2", "--quiet"]) == 3
    assert _snapshot(out) == _snapshot(ref)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["ok"], summary["failed"]) == (6, 3)
    assert main(["segment", str(src), "-o", str(out), "--engine", "ray", "--quiet"]) == 3  # resumed: 3 retried
    assert main(["segment", str(src), "-o", str(tmp_path / "x"), "--ray-address", "auto"]) == 2
    assert "--ray-address is for --engine ray" in capsys.readouterr().err


# --------------------------------------------------------------------------- Ray missing


def test_without_ray_the_ray_engine_says_how_to_install_it(monkeypatch, tmp_path: Path, capsys) -> None:
    from skinseg.cli import main
    from skinseg.runs._ray_compat import RayMissingError

    src = tmp_path / "in"
    _images(src, 1)
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now raises ImportError
    with pytest.raises(RayMissingError, match=r'needs Ray: pip install "skinseg-dermoscopy\[ray\]"'):
        segment_folder("default", src, tmp_path / "out", engine="ray", progress=False)
    assert main(["segment", str(src), "-o", str(tmp_path / "out"), "--engine", "ray"]) == 2
    assert 'error: --engine ray needs Ray: pip install "skinseg-dermoscopy[ray]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_local_engine_imports_neither_ray_nor_pyarrow(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _images(src, 2)
    code = ("import sys\nfrom skinseg.cli import main\n"
            f"rc = main(['segment', {str(src)!r}, '-o', {str(tmp_path / 'out')!r}, '--quiet'])\n"
            "print(rc, 'ray' in sys.modules, 'pyarrow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip().splitlines()[-1] == "0 False False"


def test_a_cluster_that_cannot_be_joined_is_a_usage_error() -> None:
    """ray.init raises ConnectionError for "auto" without a cluster and calls sys.exit for an unreachable address."""
    from skinseg.runs._ray_compat import connect

    class Unreachable:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs) -> None:
            raise self.exc

    with pytest.raises(ConfigError, match="Cannot join the Ray cluster at 'auto'.*Could not find"):
        connect(Unreachable(ConnectionError("Could not find any running Ray instance.")), "auto")
    with pytest.raises(ConfigError, match="'10.0.0.9:6379' \\(SystemExit: exit status 15\\)"):
        connect(Unreachable(SystemExit(15)), "10.0.0.9:6379")


class _RecordingRay:
    """A stand-in for ``ray`` that records the environment its daemons would inherit."""

    def __init__(self) -> None:
        self.env: dict[str, str | None] = {}

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs) -> None:
        self.env = {"RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED")}


def test_a_local_instance_sends_no_usage_statistics(monkeypatch) -> None:
    """Ray reports usage statistics by default; the instance skinseg starts must not (no network unless asked)."""
    from skinseg.runs._ray_compat import connect, disconnect

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    ray = _RecordingRay()
    assert connect(ray, None)
    assert ray.env["RAY_USAGE_STATS_ENABLED"] == "0"  # the daemons inherit it
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"  # and the driver's Ray Data reads it during the run
    disconnect(ray, True)
    assert "RAY_USAGE_STATS_ENABLED" not in os.environ  # gone with the connection
    connect(ray, "auto")  # a cluster keeps its own setting
    assert ray.env["RAY_USAGE_STATS_ENABLED"] is None and "RAY_USAGE_STATS_ENABLED" not in os.environ
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # the user's choice wins
    connect(ray, None)
    assert ray.env["RAY_USAGE_STATS_ENABLED"] == "1"
    disconnect(ray, True)
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"


def test_a_failed_start_leaves_the_environment_as_it_was(monkeypatch) -> None:
    from skinseg.runs._ray_compat import connect

    class FailingRay(_RecordingRay):
        def init(self, **kwargs) -> None:
            raise RuntimeError("no room for the object store")

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    with pytest.raises(ConfigError, match="Cannot start a local Ray instance .*object store"):
        connect(FailingRay(), None)
    assert "RAY_USAGE_STATS_ENABLED" not in os.environ


def test_a_local_instance_starts_without_ray_token_notice(caplog) -> None:
    """Ray logs a WARNING about its token authentication on every local start; not for skinseg's own instance."""
    import logging

    from skinseg.runs._ray_compat import TOKEN_NOTICE_LOGGER, connect

    class NoticeRay(_RecordingRay):
        def init(self, **kwargs) -> None:
            notice = logging.getLogger(TOKEN_NOTICE_LOGGER)
            notice.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled ...")
            notice.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")

    with caplog.at_level(logging.WARNING, logger=TOKEN_NOTICE_LOGGER):
        assert connect(NoticeRay(), None)
        assert [r.getMessage()[:40] for r in caplog.records] == ["Token authentication is disabled for thi"]
        caplog.clear()
        connect(NoticeRay(), "auto")  # a joined cluster: Ray's messages as they are
        assert len(caplog.records) == 2
        caplog.clear()
        logging.getLogger(TOKEN_NOTICE_LOGGER).warning("Token authentication is enabled for this Ray cluster.")
        assert len(caplog.records) == 1  # the filter is gone after ray.init


def test_ray_data_runs_quietly_and_is_restored() -> None:
    import logging

    from skinseg.runs._ray_compat import quiet_data

    class Data:
        class DataContext:
            enable_progress_bars = True

            @classmethod
            def get_current(cls):
                return cls

    ray = type("FakeRay", (), {"data": Data})
    logger = logging.getLogger("ray.data")
    before = logger.level
    with quiet_data(ray):
        assert Data.DataContext.enable_progress_bars is False and logger.level == logging.WARNING
    assert Data.DataContext.enable_progress_bars is True and logger.level == before


def test_uris_need_the_ray_engine(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="engine='ray'"):
        segment_folder("default", "s3://bucket/in", tmp_path / "out", progress=False)


# --------------------------------------------------------------------------- URIs


def test_uri_paths_on_pyarrow_local_filesystem(ray_local, folder, tmp_path: Path) -> None:
    pafs = pytest.importorskip("pyarrow.fs")
    src, ref = folder
    out = tmp_path / "uri"
    result = segment_folder("default", f"local://{src}", f"local://{out}", engine="ray", progress=False)
    assert (result.n_ok, result.n_failed) == (6, 3)
    assert _snapshot(out) == _snapshot(ref)
    assert _settings(out) == _settings(ref)  # local:// and the plain path are the same input
    # the same folder through a filesystem object: resumed, nothing to do
    again = segment_folder("default", str(src), str(out), engine="ray", progress=False,
                           ray_options=RayOptions(filesystem=pafs.LocalFileSystem()))
    assert (again.n_skipped, again.n_processed) == (6, 3)
    assert _snapshot(out) == _snapshot(ref) and not list(out.rglob("*.tmp"))
    assert str(again.results_csv) == f"{out}/results.csv"


def test_storage_lists_like_scan_images_and_redacts_credentials(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from skinseg.io import scan_images
    from skinseg.runs.storage import open_store, redact_uri

    src = tmp_path / "in"
    _images(src, 3)
    (src / "img00_segmentation.png").write_bytes(b"x")
    (src / ".hidden.png").write_bytes(b"x")
    (src / "notes.txt").write_bytes(b"x")
    (src / "sub").mkdir()
    _images(src / "sub", 1, start=7)
    (src / ".git").mkdir()
    (src / ".git" / "a.png").write_bytes(b"x")
    (src / "dir.png").mkdir()
    for recursive in (False, True):
        scan = scan_images(src, recursive=recursive, exclude_suffix="_segmentation")
        found, skipped = open_store(f"local://{src}").scan_images(recursive=recursive, exclude_suffix="_segmentation")
        assert [rel for rel, _ in found] == [p.relative_to(src).as_posix() for p in scan.images]
        assert skipped == scan.skipped_counts()
    assert redact_uri("s3://AKIA:s3cret@bucket/in?endpoint_override=h:9000&secret_key=x&scheme=http") == (
        "s3://bucket/in?endpoint_override=h%3A9000&scheme=http")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_store(f"local://{tmp_path / 'nope'}").scan_images()


def test_s3_compatible_server(ray_local, folder, tmp_path: Path, capsys) -> None:
    """A moto S3 server started here; credentials in the URI never reach run.json, rows or messages."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed: no local S3-compatible server")
    pafs = pytest.importorskip("pyarrow.fs")
    from moto.server import ThreadedMotoServer

    from skinseg.runs.storage import open_store

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        secret = "s3cr3t-do-not-print"
        s3 = pafs.S3FileSystem(access_key="testing", secret_key=secret, endpoint_override=f"{host}:{port}",
                               scheme="http", allow_bucket_creation=True)
        s3.create_dir("lesions")
        src, ref = folder
        for p in src.iterdir():
            with s3.open_output_stream(f"lesions/in/{p.name}") as f:
                f.write(p.read_bytes())
        query = f"endpoint_override={host}:{port}&scheme=http"
        uri_in = f"s3://testing:{secret}@lesions/in?{query}"
        uri_out = f"s3://testing:{secret}@lesions/out?{query}"
        result = segment_folder("default", uri_in, uri_out, engine="ray", progress=False)
        assert (result.n_ok, result.n_failed) == (6, 3)
        got = {}
        for info in s3.get_file_info(pafs.FileSelector("lesions/out", recursive=True)):
            if info.type == pafs.FileType.File and info.base_name not in _BOOKKEEPING:
                with s3.open_input_stream(info.path) as f:
                    got[info.path.removeprefix("lesions/out/")] = f.read()
        expected = _snapshot(ref)
        rows_ref = expected.pop("results.csv").decode()
        rows_s3 = got.pop("results.csv").decode()
        assert got == expected  # masks and overlays: the same bytes
        assert rows_s3 == rows_ref.replace(str(src), "s3://lesions/in")  # messages name the file's URI
        with s3.open_input_stream("lesions/out/run.json") as f:
            run_json = f.read().decode()
        assert secret not in run_json and secret not in rows_s3 and "testing:" not in run_json
        assert json.loads(run_json)["settings"]["in_dir"].startswith("s3://lesions/in?")
        assert secret not in str(result) and secret not in capsys.readouterr().err
        again = segment_folder("default", uri_in, uri_out, engine="ray", progress=False)
        assert (again.n_skipped, again.n_processed) == (6, 3)  # resumed from the uploaded journal
        assert open_store(uri_out).listing().keys() >= {"journal.jsonl", "timings.csv", "run.json"}
    finally:
        server.stop()


# --------------------------------------------------------------------------- faults


def test_a_killed_worker_loses_and_duplicates_nothing(ray_local, predictor, tmp_path: Path) -> None:
    """Kill one actor process mid-run: Ray restarts it and retries its batch; every image once, no temp files."""
    src = tmp_path / "in"
    _images(src, 16)
    _bad(src)
    killed: list[int] = []
    out = tmp_path / "out"

    def kill_first(result) -> None:
        if not killed:
            killed.append(result.worker_pid)
            os.kill(result.worker_pid, signal.SIGKILL)
            # what a writer killed mid-write leaves behind
            (out / ".img15_segmentation.png.00000000abcd.tmp").write_bytes(b"half a png")

    result = segment_folder("default", src, out, engine="ray", workers=2, progress=False,
                            ray_options=RayOptions(rows_per_batch=2, on_result=kill_first))
    assert killed and result.n_processed == 19 and (result.n_ok, result.n_failed) == (16, 3)
    counts = collections.Counter(r["file"] for r in _rows(out))
    assert len(counts) == 19 and set(counts.values()) == {1}
    assert not list(out.rglob("*.tmp"))
    reference = tmp_path / "reference"
    segment_folder(predictor, src, reference, progress=False)
    assert _snapshot(out) == _snapshot(reference)


@pytest.mark.slow
def test_a_killed_driver_resumes(tmp_path: Path, predictor) -> None:
    """``skinseg segment --engine ray`` killed mid-run (its own local Ray instance), then rerun: done once each."""
    src = tmp_path / "in"
    _images(src, 40)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "skinseg", "segment", str(src), "-o", str(out), "--engine", "ray", "--workers",
           "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 5:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    lines = len(journal.read_text().splitlines())
    assert 5 <= lines < 40, "the driver was not killed mid-run"
    rerun = subprocess.run([*cmd[:-1], "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary["skipped"] >= 5 and summary["ok"] == 40
    counts = collections.Counter(r["file"] for r in _rows(out))
    assert len(counts) == 40 and set(counts.values()) == {1} and not list(out.rglob("*.tmp"))
    reference = tmp_path / "reference"
    segment_folder(predictor, src, reference, progress=False)
    assert _snapshot(out) == _snapshot(reference)


@pytest.mark.slow
def test_masks_match_the_local_engine_on_real_images(ray_local, predictor, lesions_dir: Path, tmp_path: Path) -> None:
    """The dev images (first 24): byte-identical masks and overlays (ONNX int8 is deterministic per input)."""
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((lesions_dir / "images").glob("*.jpg"))[:24]:
        os.symlink(p, src / p.name)
    ref, out = tmp_path / "local", tmp_path / "ray"
    segment_folder(predictor, src, ref, progress=False)
    segment_folder("default", src, out, engine="ray", workers=2, progress=False)
    assert _snapshot(out) == _snapshot(ref)
    assert np.all([len(v) > 0 for v in _snapshot(out).values()])


# --------------------------------------------------------------------------- classify


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    import skinseg.classify as C

    torch.manual_seed(0)
    ens = C.ClassifierEnsemble([C.create_classifier(pretrained=False, input_size=64),
                                C.create_classifier(pretrained=False, input_size=64, crop_mode="full")])
    return C.save_classifier(ens, tmp_path_factory.mktemp("clf") / "clf")


def test_classify_on_ray_writes_the_local_engines_bytes(ray_local, folder, classifier_dir, tmp_path: Path,
                                                        monkeypatch, capsys) -> None:
    """classify --engine ray has no code of its own: the same job on the same skeleton, the same bytes."""
    from skinseg.cli import main
    from skinseg.runs import classify_folder

    monkeypatch.setenv("SKINSEG_CACHE_DIR", str(tmp_path / "cache"))
    src, _ = folder
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    args = ["classify", str(src), "--classifier", str(classifier_dir), "--quiet"]
    assert main([*args, "-o", str(local)]) == 3  # the 3 bad files
    assert main([*args, "-o", str(ray_out), "--engine", "ray", "--workers", "2"]) == 3
    assert _snapshot(ray_out) == _snapshot(local)
    assert json.loads((ray_out / "run.json").read_text())["settings"] == json.loads(
        (local / "run.json").read_text())["settings"]
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["ok"], summary["failed"], summary["classified"]) == (6, 3, 6)
    again = classify_folder(src, ray_out, classifier=str(classifier_dir), segmenter="default", engine="ray",
                            progress=False)  # resumed: only the bad files are retried
    assert (again.n_skipped, again.n_processed) == (6, 3)
