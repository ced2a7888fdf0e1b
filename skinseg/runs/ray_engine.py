"""The Ray engine of ``skinseg segment``: the same folder run on a Ray cluster, with Ray Data.

::

    driver    list the inputs (local folder or URI) -> skip the complete ones (the journal)
              -> ray.data.from_items([{key, path}, ...])                    (paths only)
    actors    map_batches(SegmentWorker, compute=ActorPoolStrategy(size=workers))
              one Predictor per actor, loaded once; per batch: read + decode
              (skinseg.io) -> predict_stream -> mask / overlay PNGs written straight to OUT
              -> one small result row per image                     (runs.ray_worker)
    driver    iter_batches() -> RunJournal.append_many (journal.jsonl, timings.csv)
              -> results.csv

Images are decoded, segmented and encoded inside the actors; only paths go out and result
rows come back through Ray's object store. The driver owns the journal, the lock (local
outputs), the settings check and resume, exactly as the local engine
(:func:`skinseg.runs.segment_folder`): the outputs are byte-identical, the run files have the
same format, and the engine is not part of the run's settings, so a run started with one
engine can be resumed with the other.

**Faults.** Ray restarts a killed actor and retries its batch (Ray Data's actor pools use
``max_restarts=-1``, ``max_task_retries=-1``); files are written atomically, so a retried
image rewrites the same bytes, the journal keeps one row per image (the last line wins)
and results.csv is rewritten from it; temporary files of a killed writer are removed at
the end of the run (and at the start of the next one). A killed driver resumes like the
local engine. For a URI output the journal is uploaded every ``journal_upload_s`` seconds
(see :class:`~skinseg.runs.storage.StagedRunFiles`); images finished after the last upload
are redone on resume.

The version-dependent Ray calls are in :mod:`skinseg.runs._ray_compat`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._checks import check_positive_int
from ..errors import ConfigError
from ..inference import Predictor
from ..io import DEFAULT_MAX_PIXELS
from ._ray_compat import actor_pool, cluster_resources, connect, disconnect, import_ray, quiet_data
from .inputs import Job, list_inputs, no_images_error
from .journal import RUN_FILE, FolderRunResult, ResultsFile, RunJournal, input_stat
from .outdir import OutputLock, check_output_dir, prepare_output_folder, remove_stale_temps
from .ray_worker import SegmentWorker, predictor_loader, predictor_settings
from .segment import (
    RESULTS_FILE,
    OutputSpec,
    check_output_options,
    segment_outputs,
    segment_settings,
)
from .storage import (
    ArrowStore,
    ListedOutputFiles,
    LocalStore,
    StagedRunFiles,
    check_store_locations,
    open_store,
    prepare_store_output,
    remove_store_temps,
)

__all__ = ["RayOptions", "segment_folder_ray", "WorkerResult"]

MAX_ROWS_PER_BATCH = 8


@dataclass(frozen=True)
class RayOptions:
    """How :func:`skinseg.runs.segment_folder` runs with ``engine="ray"``.

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
    """

    address: str | None = None
    worker_cpus: float = 0.5
    worker_gpus: float = 0.0
    rows_per_batch: int | None = None
    filesystem: Any = None
    journal_upload_s: float = 10.0

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

    @property
    def worker_threads(self) -> int:
        return max(1, int(self.worker_cpus))


@dataclass(frozen=True)
class WorkerResult:
    """One image's result as the driver receives it (for :func:`segment_folder_ray`'s ``on_result``)."""

    key: str
    row: dict[str, str]
    outputs: list[str]
    worker_pid: int


def _probe_settings(ray: Any, loader: Callable[[], Predictor], options: RayOptions) -> tuple[dict[str, Any], float]:
    """(settings, threshold) of the Predictor the workers will load: loaded here, or on a GPU worker."""

    def probe() -> tuple[dict[str, Any], float]:
        predictor = loader()
        return predictor_settings(predictor), float(predictor.threshold)

    if options.worker_gpus <= 0:
        return probe()

    remote = ray.remote(probe).options(num_cpus=options.worker_cpus, num_gpus=options.worker_gpus)
    return ray.get(remote.remote())


# ----------------------------------------------------------------------------- the driver


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


def segment_folder_ray(
    model: Any,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    threshold: float | None = None,
    tta: bool | None = None,
    preprocess: Any = "model",
    batch_size: int = 4,
    workers: int | None = None,
    overlay: bool = True,
    overwrite: bool = False,
    recursive: bool = False,
    mask_suffix: str = "_segmentation",
    convert: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    largest_component: bool = True,
    fill_holes: bool = True,
    measure: bool = False,
    pixel_size_mm: float | None = None,
    progress: bool = True,
    wait: bool = False,
    options: RayOptions | None = None,
    on_result: Callable[[WorkerResult], None] | None = None,
    include_runs: bool = False,
    verify_inputs: bool = False,
) -> FolderRunResult:
    """:func:`skinseg.runs.segment_folder` with ``engine="ray"`` (see there and the module docstring).

    ``in_dir`` and ``out_dir`` may be local folders (seen at the same path by every node, e.g.
    NFS), URIs (``s3://``, ``gs://``, ``abfs://``, ``local://``, ...) or paths on
    ``options.filesystem``. ``workers`` is the number of actors (default one per CPU of the
    cluster, or per ``worker_gpus`` GPUs; never more than there are batches). ``model``: see
    :func:`~skinseg.runs.ray_worker.predictor_loader`. ``on_result`` is called in the driver with each
    :class:`WorkerResult` as it arrives (progress reports, tests). A URI output has no lock
    (``wait`` needs a local output folder).
    """
    options = options or RayOptions()
    if not isinstance(options, RayOptions):
        raise ConfigError(f"`ray_options` must be a skinseg.runs.RayOptions; got {type(options).__name__}.")
    if workers is not None:
        workers = check_positive_int(workers, "workers")
    max_pixels, mask_suffix, pixel_size_mm = check_output_options(max_pixels, mask_suffix, pixel_size_mm, measure)
    src = open_store(in_dir, filesystem=options.filesystem)
    dst = open_store(out_dir, filesystem=options.filesystem)
    if isinstance(dst, ArrowStore) and wait:
        raise ConfigError("wait=True (--wait) needs a lock, and a URI output folder has none; leave it out.")
    if isinstance(src, LocalStore) and isinstance(dst, LocalStore):
        check_output_dir(in_dir, out_dir)
    else:
        src.check_folder("Input folder")
        check_store_locations(src, dst)
    outputs = segment_outputs(mask_suffix)
    if isinstance(src, LocalStore):
        jobs, not_taken = list_inputs(src.root, recursive=recursive, exclude_suffix=mask_suffix,
                                      outputs=outputs, include_runs=include_runs)
        stats: dict[str, list[int]] | None = None
    else:
        if verify_inputs:
            raise ConfigError("verify_inputs (--verify-inputs) hashes local files; leave it out for URI "
                              "inputs.")
        listed, not_taken = src.scan_images(recursive=recursive, exclude_suffix=mask_suffix,
                                            skip_runs=not include_runs)
        jobs, stats = _uri_jobs(src, listed, outputs), dict(listed)
    if not jobs:
        raise no_images_error(src.location, recursive, not_taken, mask_suffix)

    def stat_of(job: Job) -> list[int]:
        return stats[job.key] if stats is not None else input_stat(job.path, verify=verify_inputs)

    ray = import_ray()  # before any work: without Ray, say so at once
    loader, predictor = predictor_loader(model, tta=tta, preprocess=preprocess, batch_size=batch_size,
                                         threshold=threshold, threads=options.worker_threads,
                                         gpus=options.worker_gpus > 0)
    if predictor is None and options.worker_gpus <= 0:  # CPU workers: load it here and send it by value
        loader, predictor = _load_here(loader, options)
    connection = _Connection(ray, options.address)
    try:
        if predictor is not None:
            settings_pred, spec_threshold = predictor_settings(predictor), predictor.threshold
        else:  # GPU workers: ask one of them what it loads (this machine may have no GPU)
            settings_pred, spec_threshold = _probe_settings(connection.get(), loader, options)
        spec = OutputSpec(spec_threshold, bool(largest_component), bool(fill_holes), bool(overlay), bool(measure),
                          pixel_size_mm)
        settings = segment_settings(src.location, settings_pred, spec, mask_suffix=mask_suffix, recursive=recursive,
                                    convert=convert, max_pixels=max_pixels)
        run = _DriverRun(connection, jobs, spec, settings, settings_pred, src, dst, options=options, loader=loader,
                         workers=workers, mask_suffix=mask_suffix, convert=bool(convert), max_pixels=max_pixels,
                         progress=progress, on_result=on_result, stat_of=stat_of)
        if isinstance(dst, LocalStore):
            dst.root.mkdir(parents=True, exist_ok=True)
            with OutputLock(dst.root, wait=wait):
                return run.local_output(overwrite=overwrite, not_taken=not_taken)
        return run.uri_output(overwrite=overwrite, not_taken=not_taken)
    finally:
        connection.close()


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
        disconnect(self.ray, self.started)


def _load_here(loader: Callable[[], Predictor], options: RayOptions,
               ) -> tuple[Callable[[], Predictor], Predictor]:
    """Load the model on the driver (checked before Ray starts) and send it by value when possible.

    A deferred ONNX export (a checkpoint without its own export) is made once here (into the
    loader's cache folder, if it has one) rather than on every worker.
    """
    predictor = loader()
    deferred = getattr(predictor.backend, "backend", None)
    if getattr(predictor.backend, "path", None) is None and callable(deferred):
        deferred()  # export now; a loader with a cache folder then finds the file
        predictor = loader()
    try:
        by_value, _ = predictor_loader(predictor, threads=options.worker_threads, gpus=options.worker_gpus > 0)
    except ConfigError:  # e.g. an ONNX model held only in memory: each worker calls the loader
        return loader, predictor
    return by_value, predictor


def _uri_jobs(src: ArrowStore, listed: list[tuple[str, list[int]]], outputs: Callable[[Path], dict[str, str]],
              ) -> list[Job]:
    jobs: list[Job] = []
    owner: dict[str, str] = {}
    for i, (rel, _stat) in enumerate(listed):
        files = outputs(Path(rel))
        for out_rel in files.values():
            if out_rel in owner:
                raise ConfigError(
                    f"'{owner[out_rel]}' and '{src.display(rel)}' would both write '{out_rel}' (same stem). Rename "
                    "one of them or move it to another folder."
                )
            owner[out_rel] = src.display(rel)
        jobs.append(Job(i, src.display(rel), rel, files))
    return jobs


class _DriverRun:
    """One run's driver side: journal, Ray Data pipeline, results."""

    def __init__(self, connection: _Connection, jobs: list[Job], spec: OutputSpec, settings: dict[str, Any],
                 model_settings: dict[str, Any], src: LocalStore | ArrowStore, dst: LocalStore | ArrowStore,
                 *, options: RayOptions, loader: Callable[[], Predictor], workers: int | None, mask_suffix: str,
                 convert: bool, max_pixels: int, progress: bool, on_result: Callable[[WorkerResult], None] | None,
                 stat_of: Callable[[Job], list[int]]) -> None:
        self.connection, self.jobs, self.spec, self.settings = connection, jobs, spec, settings
        self.src, self.dst, self.model_settings = src, dst, model_settings
        self.options, self.loader, self.workers = options, loader, workers
        self.mask_suffix, self.convert, self.max_pixels = mask_suffix, convert, max_pixels
        self.progress, self.on_result, self.stat_of = progress, on_result, stat_of
        self.written = [tuple(j.outputs.values()) if spec.overlay else (j.mask,) for j in jobs]

    def _results(self) -> ResultsFile:
        return ResultsFile(RESULTS_FILE, self.spec.columns)

    def local_output(self, *, overwrite: bool, not_taken: dict[str, int]) -> FolderRunResult:
        out = self.dst.root  # type: ignore[union-attr]
        journal = RunJournal(out, kind="segment", settings=self.settings, results=self._results())
        prepare_output_folder(journal, out, self.written, overwrite=overwrite)

        def clean() -> None:
            expected: dict[Path, set[str]] = {}
            for files in self.written:
                for rel in files:
                    expected.setdefault((out / rel).parent, set()).add(Path(rel).name)
            remove_stale_temps(expected)

        return self._run(journal, not_taken, clean=clean, staged=None)

    def uri_output(self, *, overwrite: bool, not_taken: dict[str, int]) -> FolderRunResult:
        dst: ArrowStore = self.dst  # type: ignore[assignment]
        staging = Path(tempfile.mkdtemp(prefix="skinseg-run-"))
        staged = StagedRunFiles(dst, staging, RESULTS_FILE, every_s=self.options.journal_upload_s)
        try:
            staged.pull()
            listed = dst.listing()
            journal = RunJournal(staging, kind="segment", settings=self.settings, results=self._results(),
                                 files=ListedOutputFiles(dst, listed))
            prepare_store_output(journal, dst, listed, self.written, overwrite=overwrite)
            staged.push()  # run.json now, and an overwrite's old run files are gone

            def clean() -> None:
                if not dst.direct_put:  # object stores are written with single PUTs: no temporary files
                    remove_store_temps(dst, dst.listing(), {rel for files in self.written for rel in files})

            result = self._run(journal, not_taken, clean=clean, staged=staged)
            staged.push((RUN_FILE,))  # with the summary of this run
            return dataclasses.replace(result, out_dir=dst.location, results_csv=dst.display(RESULTS_FILE))
        finally:
            staged.close()

    def _run(self, journal: RunJournal, not_taken: dict[str, int], *, clean: Callable[[], None],
             staged: StagedRunFiles | None) -> FolderRunResult:
        keys = [j.key for j in self.jobs]
        todo, gone = journal.pending(self.jobs, stat_of=self.stat_of)
        try:
            with journal.running(keys, len(todo), desc="segment", progress=self.progress) as bar:
                journal.on_append = None  # _record counts each image once, even one a restarted worker redid
                if todo:
                    self._pipeline(journal, todo, bar, staged)
        finally:
            if staged is not None:
                staged.push()
        clean()
        return journal.summarise(keys, len(todo), gone, not_taken)

    def _record(self, journal: RunJournal, batch: dict[str, Any], by_key: dict[str, Job], done: set[str],
                bar: Any) -> None:
        """Journal one batch of result rows (one fsync), then report them."""
        fatal = next((str(f) for f in batch["fatal"] if f), "")
        if fatal:
            raise ConfigError(f"A Ray worker cannot run the model: {fatal}")
        finished, results = [], []
        for key, row_json, outputs_json, read_s, infer_s, write_s, pid in zip(
                batch["key"], batch["row"], batch["outputs"], batch["read_s"], batch["infer_s"], batch["write_s"],
                batch["pid"], strict=True):
            key, row, outputs = str(key), json.loads(row_json), json.loads(outputs_json)
            timing = (float(read_s), float(infer_s), float(write_s), float(read_s) + float(infer_s) + float(write_s))
            finished.append((key, row, self.stat_of(by_key[key]), outputs, timing))
            results.append(WorkerResult(key, row, outputs, int(pid)))
        journal.append_many(finished)
        for result in results:
            if result.key not in done:
                done.add(result.key)
                if bar is not None:
                    bar.update(1)
            if self.on_result is not None:
                self.on_result(result)

    def _pipeline(self, journal: RunJournal, todo: list[Job], bar: Any, staged: StagedRunFiles | None) -> None:
        ray, options = self.connection.get(), self.options
        per_batch = options.rows_per_batch
        if per_batch is None:
            guess = self.workers or max(1, int(cluster_resources(ray).get("CPU", 1.0)))
            per_batch = max(1, min(MAX_ROWS_PER_BATCH, math.ceil(len(todo) / (2 * guess))))
        n_batches = math.ceil(len(todo) / per_batch)
        workers = _pool_size(ray, self.workers, options, n_batches, self.connection.started)
        by_key = {j.key: j for j in todo}
        ds = ray.data.from_items([{"key": j.key, "path": j.path} for j in todo], override_num_blocks=n_batches)
        ds = ds.map_batches(
            SegmentWorker,
            batch_size=per_batch,
            batch_format="numpy",
            fn_constructor_args=(self.loader, self.model_settings, self.spec, self.src, self.dst),
            fn_constructor_kwargs={"mask_suffix": self.mask_suffix, "convert": self.convert,
                                   "max_pixels": self.max_pixels, "readers": options.worker_threads},
            num_cpus=options.worker_cpus,
            num_gpus=options.worker_gpus or None,
            **actor_pool(ray, workers),
        )
        done: set[str] = set()
        with quiet_data(ray):
            batches = iter(ds.iter_batches(batch_size=None, batch_format="numpy"))  # as the actors return them
            try:
                for batch in batches:
                    self._record(journal, batch, by_key, done, bar)
                    if staged is not None:
                        staged.maybe_push_journal()
            finally:
                close = getattr(batches, "close", None)
                if close is not None:
                    close()  # stop Ray Data's execution when the run is interrupted
        missing = len(by_key) - len(done)
        if missing:  # pragma: no cover - Ray Data delivers every row or raises
            raise RuntimeError(f"{missing} image(s) did not come back from the Ray workers; rerun to finish them.")
