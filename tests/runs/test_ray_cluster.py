"""``engine="ray"`` on a Ray cluster of two nodes on this machine: the workers on the second node, for real.

``ray.cluster_utils.Cluster`` starts a head node with no CPU for workers (the driver joins it)
and a worker node with 2 CPUs, each with its own raylet and object store: every actor runs on
the worker node, and its results come back across nodes. Checked, for ``segment`` and
``classify``: the same outputs as the local engine; a worker node killed mid-run (a new one
joins) loses and duplicates nothing. Marked ``ray_cluster`` (under 2 minutes; CI runs it).
"""

from __future__ import annotations

import collections
import csv
import os
import threading
from pathlib import Path

import pytest

from skinseg.io import write_image
from skinseg.testing import synthetic_lesion

pytestmark = pytest.mark.ray_cluster
_BOOKKEEPING = {"timings.csv", "journal.jsonl", "run.json", ".skinseg.lock"}


def _ancestors(pid: int) -> set[int]:
    """The parent process ids of ``pid`` (from /proc)."""
    found = set()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        found.add(pid)
    return found


def _raylet_pid(node) -> int:
    return node.all_processes["raylet"][0].process.pid


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'skinseg-dermoscopy[ray]'")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another module's local instance: this module needs a cluster of its own
        ray.shutdown()
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    made.add_node(num_cpus=2)
    made.wait_for_nodes()
    ray.init(address=made.address, logging_level="WARNING", log_to_driver=False)
    yield made
    ray.shutdown()
    made.shutdown()


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        image, _ = synthetic_lesion((48 + 5 * (i % 4), 64 - 3 * (i % 3)), rng=i)
        write_image(folder / f"img{i:02d}.{'png' if i % 2 else 'jpg'}", image)
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in _BOOKKEEPING}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    import skinseg.classify as C

    torch.manual_seed(0)
    return C.save_classifier(C.create_classifier(pretrained=False, input_size=64),
                             tmp_path_factory.mktemp("clf") / "clf")


def test_segment_and_classify_run_on_the_second_node(cluster, classifier_dir, tmp_path: Path) -> None:
    from skinseg.classify import ClassifierPredictor
    from skinseg.runs import RayOptions, classify_folder, segment_folder

    src = _images(tmp_path / "in", 6)
    worker_raylet = _raylet_pid(cluster.list_all_nodes()[1])
    pids: list[int] = []
    options = RayOptions(address=cluster.address, rows_per_batch=2, on_result=lambda r: pids.append(r.worker_pid))
    segment_folder("default", src, tmp_path / "seg_local", progress=False)
    result = segment_folder("default", src, tmp_path / "seg_ray", engine="ray", workers=2, ray_options=options,
                            progress=False)
    assert (result.n_ok, result.n_failed) == (6, 1)
    assert _snapshot(tmp_path / "seg_ray") == _snapshot(tmp_path / "seg_local")
    assert pids and all(worker_raylet in _ancestors(pid) for pid in set(pids))  # every actor on the second node
    assert os.getpid() not in pids

    pids.clear()
    classifier = ClassifierPredictor.load(classifier_dir, cache_dir=tmp_path / "cache")
    classify_folder(src, tmp_path / "cls_local", classifier=classifier, segmenter="default", progress=False)
    classify_folder(src, tmp_path / "cls_ray", classifier=classifier, segmenter="default", engine="ray", workers=2,
                    ray_options=options, progress=False)
    assert _snapshot(tmp_path / "cls_ray") == _snapshot(tmp_path / "cls_local")
    assert pids and all(worker_raylet in _ancestors(pid) for pid in set(pids))


@pytest.mark.parametrize("job", ["segment", "classify"])
def test_a_worker_node_killed_mid_run_loses_and_duplicates_nothing(cluster, classifier_dir, tmp_path: Path,
                                                                   job: str) -> None:
    from skinseg.classify import ClassifierPredictor
    from skinseg.runs import RayOptions, classify_folder, segment_folder

    src = _images(tmp_path / "in", 12)
    killed, seen = threading.Event(), []

    def kill_the_node(result) -> None:
        seen.append(result.key)
        if not killed.is_set():
            killed.set()
            node = cluster.list_all_nodes()[1]
            cluster.remove_node(node, allow_graceful=False)  # the node's raylet, object store and workers
            cluster.add_node(num_cpus=2)  # a new node joins; the actors restart there

    options = RayOptions(address=cluster.address, rows_per_batch=2, on_result=kill_the_node)
    if job == "segment":
        def run(out: Path, **engine):
            return segment_folder("default", src, out, progress=False, **engine)
    else:
        classifier = ClassifierPredictor.load(classifier_dir, cache_dir=tmp_path / "cache")

        def run(out: Path, **engine):
            return classify_folder(src, out, classifier=classifier, segmenter="default", progress=False, **engine)
    result = run(tmp_path / "out", engine="ray", workers=2, ray_options=options)
    assert killed.is_set() and len(seen) >= 13  # killed after the first result; the rest came after
    assert result.n_processed == 13 and (result.n_ok, result.n_failed) == (12, 1)
    counts = collections.Counter(r["file"] for r in _rows(Path(result.results_csv)))
    assert len(counts) == 13 and set(counts.values()) == {1}  # nothing lost, nothing twice
    assert not list((tmp_path / "out").rglob("*.tmp"))
    run(tmp_path / "local")
    assert _snapshot(tmp_path / "out") == _snapshot(tmp_path / "local")
