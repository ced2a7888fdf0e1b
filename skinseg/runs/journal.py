"""The run journal: settings, one result row per input, resume, timings -- shared by every folder runner.

Files in the output folder::

    run.json        format, skinseg version, the run's settings (a resume must use the
                    same ones) and, after each run, a summary (counts of what was done,
                    skipped, failed, gone, and of inputs that were not taken as images)
    journal.jsonl   append-only, one line per finished input (flush + fsync): the result
                    row, the input's size and modification time, and the files written
                    for it (relative to the output folder)
    <results>.csv   the rows in input order, one per input; rewritten atomically from the
                    journal at the end of every run (also after Ctrl-C), so an interrupted
                    and resumed run ends with the same bytes as an uninterrupted one
    timings.csv     append-only log, one row per finished input (seconds per stage)

**Complete.** An input is complete when its last journal line has status ``ok``, the
input's size and modification time are those recorded, and every file listed exists.
Everything else is done again on a rerun: no line yet, an ``error`` line, a changed
input, or a missing output. A line cut by a kill is dropped. Inputs of an earlier run
that are gone are reported, their rows dropped and the files written for them removed.
The input is compared by size and modification time only, so a file replaced by another
of the same size *and* the same modification time (an archive restored with its
timestamps) keeps its old outputs. ``verify_inputs=True`` (``--verify-inputs``) also
records a BLAKE2b hash of the content and compares it instead of the modification time:
such a replacement is redone, at the cost of reading every input once more (inputs
finished without a hash are redone once).

**Settings.** run.json's settings must match to resume (:meth:`RunJournal.start`), except
while the journal has no line: a run that stopped before its first input finished (a
model that failed to load, a missing package) does not lock its settings in.

**Overwrite.** ``overwrite=True`` removes the files the journal lists (only those: a
folder's other files are never touched), the journal, the results and the timings, and
starts afresh. An output path already taken by a file no journal lists is refused, with
or without ``overwrite`` (:func:`skinseg.runs.outdir.check_foreign_outputs`).

**Text.** File names are written into the CSV files as :func:`skinseg._text.text_name`
gives them (bytes that are not UTF-8 as ``\\xHH``, backslashes doubled) and cells that a
spreadsheet would run as a formula get a leading ``'`` (:func:`skinseg._text.csv_cell`);
journal.jsonl keeps the names exactly (JSON escapes).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._files import atomic_write, fsync_dir
from .._runfile import RUN_FILE, read_run_file, run_format, settings_changes, write_run_file
from .._text import csv_line
from ..errors import ConfigError

__all__ = ["RunJournal", "ResultsFile", "FolderRunResult", "OutputFiles", "LocalOutputFiles", "RUN_FILE",
           "same_input", "JOURNAL_FILE", "TIMINGS_FILE", "TIMING_COLUMNS", "input_stat", "csv_line",
           "progress_bar"]

JOURNAL_FILE, TIMINGS_FILE = "journal.jsonl", "timings.csv"
RUN_FORMAT_VERSION = 2
TIMING_COLUMNS: tuple[str, ...] = ("run", "file", "status", "read_s", "infer_s", "write_s", "seconds")
"""``timings.csv`` columns: run start time (UTC), file, status and seconds spent reading and
preprocessing, in the model (the batch time divided by its size) and writing."""


def input_stat(path: str | os.PathLike, *, verify: bool = False) -> list[Any]:
    """[size in bytes, modification time in ns] of an input file, or [-1, -1] if it cannot be read;
    with ``verify`` also ``"blake2b:<hex>"``, a hash of the content (``""`` if it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1, ""] if verify else [-1, -1]
    stat: list[Any] = [int(st.st_size), int(st.st_mtime_ns)]
    if verify:
        digest = hashlib.blake2b(digest_size=20)
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            stat.append("blake2b:" + digest.hexdigest())
        except OSError:
            stat.append("")
    return stat


def same_input(recorded: Sequence[Any], stat: Sequence[Any]) -> bool:
    """True if an input's ``stat`` (:func:`input_stat`) is the one ``recorded`` in the journal: the same size
    and content hash when ``stat`` has one (verify_inputs), else the same size and modification time."""
    if len(stat) > 2:
        return len(recorded) > 2 and bool(stat[2]) and recorded[0] == stat[0] and recorded[2] == stat[2]
    return list(recorded[:2]) == list(stat)


class OutputFiles(Protocol):
    """Where a run's output files live, as the journal sees them (paths relative to the output folder)."""

    def exists(self, rel: str) -> bool:
        """True if the output file ``rel`` exists."""
        ...

    def remove(self, rel: str) -> None:
        """Remove the output file ``rel`` if it exists."""
        ...


class LocalOutputFiles:
    """:class:`OutputFiles` in a local folder; nothing outside the folder is ever removed."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)

    def exists(self, rel: str) -> bool:
        return (self.out / rel).is_file()

    def remove(self, rel: str) -> None:
        path = (self.out / rel).resolve()
        if self.out.resolve() in path.parents:  # never outside the output folder
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class FolderRunResult:
    """Summary of a folder run (:func:`skinseg.runs.segment_folder`, :func:`skinseg.runs.classify_folder`).

    ``n_images`` files were found; ``n_skipped`` were complete from an earlier run and
    ``n_processed`` were processed now. ``n_ok`` and ``n_failed`` count the final rows
    (all images), and ``failed`` lists ``(file, error_type, message)`` of the failed ones.
    ``gone`` lists inputs of an earlier run that no longer exist (their rows and files were
    removed); ``not_taken`` counts the folder entries not taken as images, by reason
    (see :class:`skinseg.io.ImageScan`). ``out_dir`` and ``results_csv`` are URI strings when
    the output folder is a URI (``engine="ray"``).
    """

    out_dir: Path | str
    results_csv: Path | str
    n_images: int
    n_processed: int
    n_skipped: int
    n_ok: int
    n_failed: int
    failed: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    gone: tuple[str, ...] = field(default_factory=tuple)
    not_taken: dict[str, int] = field(default_factory=dict)
    flagged: tuple[str, ...] = field(default_factory=tuple)
    """Files whose row is flagged (:attr:`ResultsFile.flag`; ``skinseg segment``: masks that need review)."""
    n_flag_decided: int = 0
    """Rows whose flag column holds a decision (0 or 1); 0 when nothing was decided (``skinseg segment``: no
    quality estimate was used, so no mask was checked for review)."""


def progress_bar(progress: bool, total: int, initial: int, desc: str) -> Any:
    """A tqdm bar on stderr (images/s), or None without ``progress``."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1)


@dataclass(frozen=True)
class ResultsFile:
    """The CSV a runner writes: its name, columns and line ending (cells missing from a row are empty).

    ``flag``: the column whose value ``"1"`` flags a row (counted in :attr:`FolderRunResult.flagged`).
    """

    name: str
    columns: tuple[str, ...]
    lineterminator: str = "\n"
    flag: str | None = None

    def render(self, rows: Iterable[dict[str, Any]]) -> str:
        return csv_line(self.columns, self.lineterminator) + "".join(
            csv_line([r.get(c, "") for c in self.columns], self.lineterminator) for r in rows
        )


@dataclass
class _Entry:
    row: dict[str, Any]
    input: list[int]
    outputs: list[str] = field(default_factory=list)


class RunJournal:
    """Bookkeeping of one folder run (see the module docstring).

    Parameters
    ----------
    out : Path
        Output folder (must exist and be locked by the caller, see :class:`~skinseg.runs.outdir.OutputLock`).
    kind : str
        ``"segment"`` or ``"classify"``: run.json records it, and a folder of one kind is not resumed as another.
    settings : dict
        Everything that determines the outputs (JSON-serialisable).
    results : ResultsFile
    files : OutputFiles, optional
        Where the inputs' output files are checked and removed; default the files in ``out``
        (:class:`LocalOutputFiles`). A run whose outputs live elsewhere (an object store) keeps
        its run files in a local ``out`` and passes its own.
    verify_inputs : bool
        Compare inputs by a hash of their content, not their modification time (see the
        module docstring); :meth:`stat` gives what to record.
    """

    def __init__(self, out: Path, *, kind: str, settings: dict[str, Any], results: ResultsFile,
                 files: OutputFiles | None = None, verify_inputs: bool = False) -> None:
        self.out, self.kind, self.results = Path(out), kind, results
        self.verify_inputs = bool(verify_inputs)
        self.files: OutputFiles = files if files is not None else LocalOutputFiles(self.out)
        self.settings = json.loads(json.dumps(settings))  # as it will read back from run.json
        self.run_file, self.journal_file = self.out / RUN_FILE, self.out / JOURNAL_FILE
        self.timings_file = self.out / TIMINGS_FILE
        self.results_path = self.out / results.name
        self.entries: dict[str, _Entry] = {}
        self.run_id = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.lock = threading.Lock()
        self._journal: Any = None
        self._timings: Any = None
        self.on_append: Callable[[dict[str, Any]], None] | None = None

    # ------------------------------------------------------------------ start

    def _format(self) -> str:
        return run_format(self.kind)

    def stat(self, path: str | os.PathLike) -> list[Any]:
        """What the journal records of an input file (:func:`input_stat`, with a hash if verify_inputs)."""
        return input_stat(path, verify=self.verify_inputs)

    def has_journal(self) -> bool:
        return self.journal_file.exists() or self.run_file.exists()

    def listed_outputs(self) -> set[str]:
        """The output files (relative paths) that the journal of an earlier run lists."""
        if not self.run_file.exists():
            return set()
        return {rel for entry in self._read_journal().values() for rel in entry.outputs}

    def start(self, *, overwrite: bool) -> None:
        """Check the settings against an earlier run (or start afresh) and read its journal.

        The settings are checked only when the journal has a line: a run that finished no
        input locks nothing in, so a retry with other settings just replaces them.
        """
        if overwrite:
            self._remove_previous()
        elif self.run_file.exists():
            self.entries = self._read_journal()
            self._check_settings(locked=bool(self.entries))
        elif self.out.joinpath(self.results.name).exists():
            raise ConfigError(
                f"'{self.out}' holds a {self.results.name} but no {RUN_FILE}, so the run cannot be resumed safely. "
                "Pass --overwrite (overwrite=True) to start afresh, or choose another output folder."
            )
        self.write_run_json()

    def _check_settings(self, *, locked: bool = True) -> None:
        payload = read_run_file(self.run_file)
        try:
            old, fmt, version = payload["settings"], payload.get("format"), payload.get("format_version", 1)
        except (KeyError, TypeError):
            raise ConfigError(
                f"'{self.run_file}' cannot be read, so the run in '{self.out}' cannot be resumed safely. "
                "Pass --overwrite (overwrite=True) to start afresh, or choose another output folder."
            ) from None
        if fmt != self._format():
            raise ConfigError(
                f"'{self.out}' holds a {fmt or 'different'} run, not a {self._format()}. Choose another output folder."
            )
        if not locked:
            return  # nothing finished yet: the new settings replace the old ones
        if version != RUN_FORMAT_VERSION:
            raise ConfigError(
                f"'{self.out}' holds a run made by an older skinseg (run format {version}), which this version "
                "cannot resume. Pass --overwrite (overwrite=True) to start afresh, or choose another output folder."
            )
        if old != self.settings:
            diff = settings_changes(old, self.settings)
            raise ConfigError(
                f"'{self.out}' holds a run made with other settings ({diff}); resuming would mix them. Rerun with "
                "the same settings, pass --overwrite (overwrite=True), or choose another output folder."
            )

    def _read_journal(self) -> dict[str, _Entry]:
        if not self.journal_file.exists():
            return {}
        data = self.journal_file.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # killed mid-line: drop the fragment so appends start on a fresh line
            with open(self.journal_file, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        entries: dict[str, _Entry] = {}
        for line in data[:end].decode("utf-8", errors="replace").splitlines():
            try:
                d = json.loads(line)
                entries[d["file"]] = _Entry(d["row"], list(d["input"]), list(d.get("outputs", [])))
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line: that input is done again
        return entries

    def _remove_previous(self) -> None:
        """``overwrite``: remove what an earlier run wrote (as its journal lists it) and the run files."""
        for entry in self._read_journal().values() if self.run_file.exists() else []:
            for rel in entry.outputs:
                self._remove_output(rel)
        for name in (JOURNAL_FILE, TIMINGS_FILE, self.results.name, RUN_FILE):
            (self.out / name).unlink(missing_ok=True)

    def _remove_output(self, rel: str) -> None:
        self.files.remove(rel)

    # ------------------------------------------------------------------ resume

    def complete(self, key: str, stat: list[int]) -> bool:
        """True if ``key`` finished ``ok`` from this input (same size and mtime) and its files exist."""
        e = self.entries.get(key)
        return (
            e is not None
            and e.row.get("status") == "ok"
            and same_input(e.input, stat)
            and all(self.files.exists(rel) for rel in e.outputs)
        )

    def drop_gone(self, present: Iterable[str]) -> list[str]:
        """Forget the entries of inputs that are not in ``present`` and remove their files; return their keys."""
        keep = set(present)
        gone = sorted(k for k in self.entries if k not in keep)
        for k in gone:
            for rel in self.entries.pop(k).outputs:
                self._remove_output(rel)
        return gone

    # ------------------------------------------------------------------ during the run

    def pending(self, jobs: Sequence[Any], stat_of: Callable[[Any], list[int]] | None = None,
                ) -> tuple[list[Any], list[str]]:
        """(jobs still to do, keys of gone inputs): drop the earlier run's inputs that are gone, then keep the
        jobs (with ``.key`` and ``.path``) that are not :meth:`complete`; ``stat_of(job)`` (default
        :meth:`stat` of ``job.path``) gives an input's [size, mtime(, hash)]."""
        stat = stat_of or (lambda j: self.stat(j.path))
        gone = self.drop_gone(j.key for j in jobs)
        return [j for j in jobs if not self.complete(j.key, stat(j))], gone

    @contextmanager
    def running(self, keys: Sequence[str], n_todo: int, *, desc: str, progress: bool) -> Iterator[Any]:
        """Open the journal (and a progress bar, which it yields; it counts every append) for the run; on
        exit, even after an error or Ctrl-C, close it and rewrite the results CSV (:attr:`results_path`)
        for ``keys`` in order."""
        bar = progress_bar(progress, len(keys), len(keys) - n_todo, desc)
        self.on_append = (lambda _row: bar.update(1)) if bar is not None else None
        self.open()
        try:
            yield bar
        finally:
            self.close()
            if bar is not None:
                bar.close()
            self.results_path = self.write_results(keys)

    def open(self) -> None:
        self._journal = open(self.journal_file, "a", encoding="utf-8", newline="")
        new_timings = not self.timings_file.exists() or self.timings_file.stat().st_size == 0
        self._timings = open(self.timings_file, "a", encoding="utf-8", newline="")
        if new_timings:
            self._timings.write(csv_line(TIMING_COLUMNS))
            self._timings.flush()
        fsync_dir(self.out)

    def append(self, key: str, row: dict[str, Any], stat: list[int], outputs: list[str],
               timing: Sequence[float] | None = None) -> None:
        """Record a finished input (thread-safe): its files must already be in place."""
        self.append_many([(key, row, stat, outputs, timing)])

    def append_many(self, finished: Sequence[tuple[str, dict[str, Any], list[int], list[str],
                                                   Sequence[float] | None]]) -> None:
        """Record several finished inputs ``(key, row, stat, outputs, timing)`` with one fsync (thread-safe).

        For runners that receive results in groups (a Ray batch): the same lines as one
        :meth:`append` each, at a fraction of the fsyncs. Their files must already be in place.
        """
        if not finished:
            return
        lines = "".join(json.dumps({"file": key, "row": row, "input": stat, "outputs": outputs}) + "\n"
                        for key, row, stat, outputs, _ in finished)
        with self.lock:
            timed = [(key, row, timing) for key, row, _, _, timing in finished if timing is not None]
            if timed:
                self._timings.write("".join(csv_line([self.run_id, key, row.get("status", ""),
                                                      *(f"{t:.4f}" for t in timing)]) for key, row, timing in timed))
                self._timings.flush()
            self._journal.write(lines)
            self._journal.flush()
            os.fsync(self._journal.fileno())
            for key, row, stat, outputs, _ in finished:
                self.entries[key] = _Entry(row, stat, outputs)
        if self.on_append is not None:
            for _, row, _, _, _ in finished:
                self.on_append(row)

    def close(self) -> None:
        for f in (self._journal, self._timings):
            if f is not None:
                f.close()
        self._journal = self._timings = None

    # ------------------------------------------------------------------ end

    def rows(self, order: Sequence[str]) -> list[dict[str, Any]]:
        """The rows of ``order`` that have one, in that order."""
        return [self.entries[k].row for k in order if k in self.entries]

    def write_results(self, order: Sequence[str]) -> Path:
        """Rewrite the results CSV atomically: one row per input of ``order`` that has one."""
        path = self.out / self.results.name
        atomic_write(path, self.results.render(self.rows(order)))
        return path

    def write_run_json(self, summary: dict[str, Any] | None = None) -> None:
        extra = {"last_run": {"started": self.run_id, **summary}} if summary is not None else {}
        write_run_file(self.run_file, self.kind, RUN_FORMAT_VERSION, self.settings, **extra)

    def summarise(self, keys: Sequence[str], n_processed: int, gone: Sequence[str],
                  not_taken: dict[str, int]) -> FolderRunResult:
        """Record the run's summary in run.json and return it (``keys``: every input, in order)."""
        finals = self.rows(keys)
        failed = tuple((str(r["file"]), str(r["error_type"]), str(r["error"])) for r in finals if r["status"] != "ok")
        skipped = len(keys) - n_processed
        flag = self.results.flag
        flagged = tuple(str(r["file"]) for r in finals if flag is not None and r.get(flag) == "1")
        decided = sum(1 for r in finals if flag is not None and r.get(flag) in ("0", "1"))
        summary = {"images": len(keys), "processed": n_processed, "skipped_complete": skipped,
                   "ok": len(finals) - len(failed), "failed": len(failed), "gone": len(gone), "not_taken": not_taken}
        if decided:  # a count of flagged rows only where the flag was decided for some
            summary[flag] = len(flagged)
        self.write_run_json(summary)
        return FolderRunResult(self.out, self.results_path, len(keys), n_processed, skipped, len(finals) - len(failed),
                               len(failed), failed, tuple(gone), dict(not_taken), flagged, decided)
