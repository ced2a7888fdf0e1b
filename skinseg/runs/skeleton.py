"""The folder-run skeleton: :func:`run_folder`, where a job and an engine meet.

A *job* (:class:`~skinseg.runs.jobs.FolderJob`: what is computed and written per image --
:class:`~skinseg.runs.segment.SegmentJob`, :class:`~skinseg.runs.classify.ClassifyJob`) and an
*engine* (:class:`~skinseg.runs.engines.Engine`: where it runs -- local threads,
:class:`~skinseg.runs.ray_engine.RayEngine`) meet here, and only here are the steps of a run
written::

    check the locations (engine)  ->  list the inputs (one listing, one set of rules; earlier runs skipped)
    -> the models' settings (loaded here, or on a GPU worker)  ->  the run's settings
    -> the output folder: lock (local) or staged run files (URI); stale temps; foreign files
    -> the journal: settings check, resume (pending: size and mtime, or a content hash), progress bar
    -> engine.run(job, todo)  ->  record: journal lines (each input once), progress
    -> results CSV (also after an error), stale temps of killed writers, run.json's summary

Every job and engine therefore shares the resume contract of :mod:`skinseg.runs.journal`,
the output-folder rules of :mod:`skinseg.runs.outdir`, the error rows and the CSV format.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .engines import Engine
from .inputs import Listing, list_inputs, no_images_error
from .jobs import Finished, FolderJob
from .journal import RUN_FILE, FolderRunResult, RunJournal
from .outdir import OutputLock, prepare_output_folder, remove_stale_temps
from .storage import (
    ArrowStore,
    ListedOutputFiles,
    LocalStore,
    StagedRunFiles,
    prepare_store_output,
    remove_store_temps,
)

__all__ = ["run_folder"]


def run_folder(job: FolderJob, engine: Engine, in_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
               overwrite: bool = False, wait: bool = False, progress: bool = True) -> FolderRunResult:
    """Run ``job`` on every image of ``in_dir`` with ``engine``, into ``out_dir``, resuming an earlier run there.

    Parameters
    ----------
    job : FolderJob
        What is computed and written per image (e.g. :class:`~skinseg.runs.segment.SegmentJob`).
    engine : Engine
        Where it runs (:class:`~skinseg.runs.engines.LocalEngine`,
        :class:`~skinseg.runs.ray_engine.RayEngine`); closed at the end.
    in_dir, out_dir : path or URI
        Input folder (never written to) and output folder (created; not ``in_dir`` or inside
        it). URIs with the Ray engine only.
    overwrite, wait, progress
        Start afresh (removing only what the earlier run's journal lists); wait for another
        run holding ``out_dir`` instead of raising; a progress bar on stderr.

    Returns
    -------
    FolderRunResult

    Raises
    ------
    ConfigError
        No images; two inputs writing one file; a run with other settings in ``out_dir`` (unless it
        finished no input); ``verify_inputs`` with a URI input;
        ``out_dir`` in use (:class:`~skinseg.runs.outdir.OutputLockedError`); ``wait`` with a
        URI output (no lock).
    OutputExistsError (a FileExistsError)
        ``out_dir`` holds a file at an output path that no skinseg run wrote (with or without
        ``overwrite``: skinseg never replaces it).
    """
    from ..errors import ConfigError

    try:
        src, dst = engine.open_stores(in_dir, out_dir)
        if isinstance(dst, ArrowStore) and wait:
            raise ConfigError("wait=True (--wait) needs a lock, and a URI output folder has none; leave it out.")
        if job.inputs.verify_inputs and not isinstance(src, LocalStore):
            raise ConfigError("verify_inputs (--verify-inputs) hashes local files; leave it out for URI "
                              "inputs.")
        listing = list_inputs(src, job.inputs, job.outputs)
        if not listing.items:
            raise no_images_error(src.location if isinstance(src, ArrowStore) else src.root, job.inputs.recursive,
                                  listing.not_taken, job.inputs.exclude_suffix)
        settings = job.settings(src.location, engine.model_settings(job))
        output = _FolderOutput(dst, wait) if isinstance(dst, LocalStore) else _StoreOutput(dst, engine.journal_upload_s)
        with output:
            journal = output.open(job, settings, [item.outputs.values() for item in listing.items], overwrite=overwrite)
            result = _run(job, engine, (src, dst), listing, journal, output, progress)
            return output.result(result)
    finally:
        engine.close()


def _run(job: FolderJob, engine: Engine, stores: tuple[Any, Any], listing: Listing, journal: RunJournal,
         output: Any, progress: bool) -> FolderRunResult:
    src = stores[0]

    def stat_of(key: str) -> list[Any]:
        known = listing.stats.get(key)
        return known if known is not None else (journal.stat(by_key[key].path) if isinstance(src, LocalStore)
                                                else src.stat(key))

    by_key = {item.key: item for item in listing.items}
    keys = [item.key for item in listing.items]
    todo, gone = journal.pending(listing.items, stat_of=lambda item: stat_of(item.key))
    try:
        with journal.running(keys, len(todo), desc=job.kind, progress=progress) as bar:
            journal.on_append = None  # the recorder counts each input once, even one a restarted worker redid
            if todo:
                engine.run(job, todo, stores, _Recorder(journal, stat_of, bar, output))
    finally:
        output.sync(final=True)
    output.finish(item.outputs.values() for item in listing.items)
    return journal.summarise(keys, len(todo), gone, listing.not_taken)


class _Recorder:
    """``record(finished)``: journal lines for finished inputs (one fsync per call), the progress bar (each input
    once), and the periodic upload of a URI output's journal. Thread-safe."""

    def __init__(self, journal: RunJournal, stat_of: Any, bar: Any, output: Any) -> None:
        self.journal, self.stat_of, self.bar, self.output = journal, stat_of, bar, output
        self.done: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, finished: list[Finished]) -> None:
        self.journal.append_many([(f.key, f.row, self.stat_of(f.key), f.outputs, f.timing) for f in finished])
        with self.lock:
            new = [f.key for f in finished if f.key not in self.done]
            self.done.update(new)
            if self.bar is not None and new:
                self.bar.update(len(new))
        self.output.sync()


# ----------------------------------------------------------------------------- output folders


class _FolderOutput:
    """A local output folder: a lock for the run, the run files beside the outputs."""

    def __init__(self, dst: LocalStore, wait: bool) -> None:
        self.root, self.lock = dst.root, OutputLock(dst.root, wait=wait)

    def __enter__(self) -> _FolderOutput:
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()

    def open(self, job: FolderJob, settings: dict[str, Any], written: list[Iterable[str]], *,
             overwrite: bool) -> RunJournal:
        """The run's journal, started: stale temps removed, foreign files refused, the settings checked."""
        journal = RunJournal(self.root, kind=job.kind, settings=settings, results=job.results,
                             verify_inputs=job.inputs.verify_inputs)
        prepare_output_folder(journal, self.root, written, overwrite=overwrite)
        return journal

    def sync(self, final: bool = False) -> None:
        pass

    def finish(self, written: Iterable[Iterable[str]]) -> None:
        """Remove temporary files a killed writer left (none of ours can be writing now)."""
        expected: dict[Path, set[str]] = {}
        for files in written:
            for rel in files:
                expected.setdefault((self.root / rel).parent, set()).add(Path(rel).name)
        remove_stale_temps(expected)

    def result(self, result: FolderRunResult) -> FolderRunResult:
        return result


class _StoreOutput:
    """A URI output: no lock; the run files are kept in a local staging folder and uploaded
    (:class:`~skinseg.runs.storage.StagedRunFiles`)."""

    def __init__(self, dst: ArrowStore, every_s: float) -> None:
        self.dst, self.every_s = dst, every_s
        self.staged: StagedRunFiles | None = None

    def __enter__(self) -> _StoreOutput:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.staged is not None:
            self.staged.close()

    def open(self, job: FolderJob, settings: dict[str, Any], written: list[Iterable[str]], *,
             overwrite: bool) -> RunJournal:
        """The run's journal in a staging folder, with the earlier run's files pulled and ``run.json`` pushed."""
        staged = self.staged = StagedRunFiles(self.dst, Path(tempfile.mkdtemp(prefix="skinseg-run-")),
                                              job.results.name, every_s=self.every_s)
        staged.pull()
        listed = self.dst.listing()
        journal = RunJournal(staged.staging, kind=job.kind, settings=settings, results=job.results,
                             files=ListedOutputFiles(self.dst, listed),
                             verify_inputs=job.inputs.verify_inputs)
        prepare_store_output(journal, self.dst, listed, written, overwrite=overwrite)
        staged.push()  # run.json now, and an overwrite's old run files are gone
        return journal

    def sync(self, final: bool = False) -> None:
        if self.staged is not None:
            self.staged.push() if final else self.staged.maybe_push_journal()

    def finish(self, written: Iterable[Iterable[str]]) -> None:
        if not self.dst.direct_put:  # object stores are written with single PUTs: no temporary files
            remove_store_temps(self.dst, self.dst.listing(), {rel for files in written for rel in files})

    def result(self, result: FolderRunResult) -> FolderRunResult:
        self.staged.push((RUN_FILE,))  # type: ignore[union-attr]  # with the summary of this run
        name = Path(result.results_csv).name
        return dataclasses.replace(result, out_dir=self.dst.location, results_csv=self.dst.display(name))
