"""The Ray engine: any folder job (segment, classify) on a Ray cluster, with Ray Data.

::

    driver    run_folder: list the inputs (local folder or URI) -> skip the complete ones (the journal)
              -> ray.data.from_items([{key, path}, ...])                    (paths only)
    actors    map_batches(JobWorker, compute=ActorPoolStrategy(size=workers))
              the job started once per actor (its models loaded or received); per batch: one read
              per file -> decode (skinseg.io) -> the job's stream and render -> files written
              straight to OUT -> one small result row per image              (runs.ray_worker)
    driver    iter_batches() -> record: journal.jsonl, timings.csv (each input once) -> the CSV

Images are decoded, processed and encoded inside the actors; only paths go out and result
rows come back through Ray's object store. The driver owns the journal, the lock (local
outputs), the settings check and resume (:func:`skinseg.runs.run_folder`, as for the local
engine): the outputs are byte-identical, the run files have the same format, and the engine
is not part of the run's settings, so a run started with one engine can be resumed with the other.

**Models.** With CPU workers the driver loads the job's models once (a settings check before
Ray starts) and sends them by value (an ONNX model as its bytes: the nodes need no model
file); GPU workers load them themselves, and one of them reports their settings first
(this machine may have no GPU). A worker whose models differ from the driver's stops the run.

**Faults.** Ray restarts a killed actor and retries its batch (Ray Data's actor pools use
``max_restarts=-1``, ``max_task_retries=-1``); files are written atomically, so a retried
image rewrites the same bytes, the journal keeps one row per image (the last line wins)
and the CSV is rewritten from it; temporary files of a killed writer are removed at
the end of the run (and at the start of the next one). A killed driver resumes like the
local engine. For a URI output the journal is uploaded every ``journal_upload_s`` seconds
(see :class:`~skinseg.runs.storage.StagedRunFiles`); images finished after the last upload
are redone on resume.

The version-dependent Ray calls are in :mod:`skinseg.runs._ray_compat`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._checks import check_positive_int
from ..errors import ConfigError
from ._ray_compat import actor_pool, cluster_resources, connect, disconnect, import_ray, quiet_data
from .inputs import InputFile
from .jobs import Finished, FolderJob
from .outdir import check_output_dir
from .ray_worker import JobWorker
from .storage import LocalStore, check_store_locations, open_store

__all__ = ["RayOptions", "RayEngine", "WorkerResult"]

MAX_ROWS_PER_BATCH = 8


@dataclass(frozen=True)
class RayOptions:
    """How :func:`skinseg.runs.segment_folder` and :func:`skinseg.runs.classify_folder` run with ``engine="ray"``.

    Parameters
    ----------
    address : str, optional
        None: start a local Ray instance for the run (or use the one this process has
        already joined with ``ray.init``); ``"auto"``, ``"HOST:PORT"`` or ``"ray://..."``:
        join that cluster (``ray.init(address=...)``).
    worker_cpus : float > 0, default 0.5
        CPUs Ray reserves per actor. Fractional by default, so a pool of one actor per core
        leaves Ray Data's own tasks room to run (a 2-core machine does not stall); the ONNX
        Runtime threads of an actor are ``max(1, int(worker_cpus))`` unless the model says.
    worker_gpus : float >= 0, default 0
        GPUs per actor (e.g. 1 with ``device="cuda"``).
    rows_per_batch : int, optional
        Images per actor call (the unit Ray retries); default up to 8, fewer for small runs
        so every actor gets work (small calls also keep the actors equally busy to the end).
    filesystem : pyarrow.fs.FileSystem, optional
        For ``in_dir`` and ``out_dir`` given as paths on it (endpoint, credentials object);
        default: local paths, or the filesystem of a URI.
    journal_upload_s : float > 0, default 10
        For a URI output: seconds between uploads of the journal during the run.
    on_result : callable, optional
        Called in the driver with each :class:`WorkerResult` as it arrives (progress reports,
        tests), after its journal line is written.
    """

    address: str | None = None
    worker_cpus: float = 0.5
    worker_gpus: float = 0.0
    rows_per_batch: int | None = None
    filesystem: Any = None
    journal_upload_s: float = 10.0
    on_result: Callable[[WorkerResult], None] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.worker_cpus, int | float) and self.worker_cpus > 0):
            raise ConfigError(f"`worker_cpus` must be a number > 0 (e.g. 0.5); got {self.worker_cpus!r}.")
        if not (isinstance(self.worker_gpus, int | float) and self.worker_gpus >= 0):
            raise ConfigError(f"`worker_gpus` must be a number >= 0; got {self.worker_gpus!r}.")
        if self.rows_per_batch is not None:
            check_positive_int(self.rows_per_batch, "rows_per_batch")
        if not (isinstance(self.journal_upload_s, int | float) and self.journal_upload_s > 0):
            raise ConfigError(f"`journal_upload_s` must be a number > 0; got {self.journal_upload_s!r}.")
        if self.address is not None and not isinstance(self.address, str):
            raise ConfigError(f"`address` must be None, 'auto', 'HOST:PORT' or 'ray://...'; got {self.address!r}.")
        if self.on_result is not None and not callable(self.on_result):
            raise ConfigError(f"`on_result` must be a function of one WorkerResult; got {self.on_result!r}.")

    @property
    def worker_threads(self) -> int:
        return max(1, int(self.worker_cpus))


@dataclass(frozen=True)
class WorkerResult:
    """One image's result as the driver receives it (for :attr:`RayOptions.on_result`)."""

    key: str
    row: dict[str, str]
    outputs: list[str]
    worker_pid: int


class RayEngine:
    """``engine="ray"``: the job's actors on a Ray cluster or a local Ray instance (see the module docstring).

    ``workers`` is the number of actors (default one per CPU of the cluster, or per
    ``worker_gpus`` GPUs; never more than there are batches).
    """

    name = "ray"

    def __init__(self, options: RayOptions | None = None, workers: int | None = None) -> None:
        options = options or RayOptions()
        if not isinstance(options, RayOptions):
            raise ConfigError(f"`ray_options` must be a skinseg.runs.RayOptions; got {type(options).__name__}.")
        self.options = options
        self.workers = None if workers is None else check_positive_int(workers, "workers")
        self.connection = _Connection(import_ray(), options.address)  # without Ray, say so at once
        self.worker_threads = options.worker_threads
        self.worker_device = "cuda" if options.worker_gpus > 0 else "cpu"
        self.journal_upload_s = options.journal_upload_s
        self.settings: dict[str, Any] = {}  # the models' settings, as the driver saw them (model_settings)

    def open_stores(self, in_dir: Any, out_dir: Any) -> tuple[Any, Any]:
        """Local folders (seen at the same path by every node, e.g. NFS), URIs or paths on ``options.filesystem``."""
        src = open_store(in_dir, filesystem=self.options.filesystem)
        dst = open_store(out_dir, filesystem=self.options.filesystem)
        if isinstance(src, LocalStore) and isinstance(dst, LocalStore):
            check_output_dir(in_dir, out_dir)
        else:
            src.check_folder("Input folder")
            check_store_locations(src, dst)
        return src, dst

    def model_settings(self, job: FolderJob) -> dict[str, Any]:
        """Loaded here for CPU workers (then sent by value); GPU workers: asked of one of them."""
        if self.options.worker_gpus <= 0:
            self.settings = job.model_settings()
            return self.settings
        ray, portable = self.connection.get(), job.portable()

        def probe() -> dict[str, Any]:
            return portable.model_settings()

        remote = ray.remote(probe).options(num_cpus=self.options.worker_cpus, num_gpus=self.options.worker_gpus)
        self.settings = ray.get(remote.remote())
        return self.settings

    def run(self, job: FolderJob, todo: list[InputFile], stores: tuple[Any, Any],
            record: Callable[[list[Finished]], None]) -> None:
        ray, options = self.connection.get(), self.options
        per_batch = options.rows_per_batch
        if per_batch is None:
            guess = self.workers or max(1, int(cluster_resources(ray).get("CPU", 1.0)))
            per_batch = max(1, min(MAX_ROWS_PER_BATCH, math.ceil(len(todo) / (2 * guess))))
        n_batches = math.ceil(len(todo) / per_batch)
        workers = _pool_size(ray, self.workers, options, n_batches, self.connection.started)
        ds = ray.data.from_items([{"key": j.key, "path": j.path} for j in todo], override_num_blocks=n_batches)
        ds = ds.map_batches(
            JobWorker,
            batch_size=per_batch,
            batch_format="numpy",
            fn_constructor_args=(job.portable(), self.settings, stores),
            fn_constructor_kwargs={"readers": options.worker_threads},
            num_cpus=options.worker_cpus,
            num_gpus=options.worker_gpus or None,
            **actor_pool(ray, workers),
        )
        done: set[str] = set()
        with quiet_data(ray):
            batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))  # as the actors return them
            try:
                for batch in batches:
                    done.update(self._record(batch, record))
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()  # stop Ray Data's execution when the run is interrupted
        missing = len(todo) - len(done & {j.key for j in todo})
        if missing:  # pragma: no cover - Ray Data delivers every row or raises
            raise RuntimeError(f"{missing} image(s) did not come back from the Ray workers; rerun to finish them.")

    def _record(self, batch: dict[str, Any], record: Callable[[list[Finished]], None]) -> list[str]:
        """Journal one batch of result rows (one fsync), then report them; the keys."""
        fatal = next((str(f) for f in batch["fatal"] if f), "")
        if fatal:
            raise ConfigError(f"A Ray worker cannot run the job: {fatal}")
        finished = []
        for key, row_json, outputs_json, read_s, infer_s, write_s, pid in zip(
                batch["key"], batch["row"], batch["outputs"], batch["read_s"], batch["infer_s"], batch["write_s"],
                batch["pid"], strict=True):
            timing = (float(read_s), float(infer_s), float(write_s), float(read_s) + float(infer_s) + float(write_s))
            finished.append(Finished(str(key), json.loads(row_json), json.loads(outputs_json), timing, int(pid)))
        record(finished)
        if self.options.on_result is not None:
            for f in finished:
                self.options.on_result(WorkerResult(f.key, f.row, f.outputs, f.worker_pid))
        return [f.key for f in finished]

    def close(self) -> None:
        self.connection.close()


def _pool_size(ray: Any, workers: int | None, options: RayOptions, n_batches: int, started: bool) -> int:
    resources = cluster_resources(ray)
    if workers is None:
        if options.worker_gpus > 0:
            workers = int(resources.get("GPU", 0.0) // options.worker_gpus)
            if workers < 1:
                raise ConfigError(f"The Ray cluster has no GPU for workers with {options.worker_gpus:g} GPU(s) each "
                                  f"(its resources: {resources}). Use worker_gpus=0 (--worker-gpus 0) on CPUs.")
        else:
            workers = max(1, int(resources.get("CPU", 1.0)))
        workers = min(workers, n_batches)
    workers = check_positive_int(workers, "workers")
    cpus = resources.get("CPU", 0.0)
    if started and options.address is None and workers * options.worker_cpus > cpus:
        raise ConfigError(
            f"{workers} workers of {options.worker_cpus:g} CPU each do not fit the local Ray instance's {cpus:g} CPUs "
            "(the run would wait forever). Pass fewer workers or a smaller worker_cpus (--worker-cpus)."
        )
    return workers


class _Connection:
    """Ray, joined or started on first use (a rerun with nothing left to do never starts it)."""

    def __init__(self, ray: Any, address: str | None) -> None:
        self.ray, self.address, self.started, self.connected = ray, address, False, False

    def get(self) -> Any:
        if not self.connected:
            self.started = connect(self.ray, self.address)
            self.connected = True
        return self.ray

    def close(self) -> None:
        if self.connected:
            disconnect(self.ray, self.started)
            self.connected = False
