"""Streaming inference: many images through one :class:`~skinseg.inference.Predictor` as a pipeline.

::

    reader threads   load(item) -> preprocessing -> prepare          (bounded look-ahead)
    caller's thread  batches of equal padded shape -> backend (+ flip TTA), or
    infer threads    several backend calls side by side (``infer_workers``)
    consumer         StreamResult.proba() -> whatever it does with it

Memory stays flat in the number of images: at most ``2 * batch_size + workers`` items
are read ahead, and a budget bounds the pixels of images in flight (an image larger
than the budget runs alone). Results come in batch order, not input order; each
carries its item and input index.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_positive_int, check_rgb_image
from .._types import ProbMap
from .predictor import Predictor, PreparedImage

__all__ = ["predict_stream", "StreamResult", "DEFAULT_INFLIGHT_PIXELS"]

DEFAULT_INFLIGHT_PIXELS = 48_000_000
"""Pixels of images read but not yet finished that a stream allows (one larger image runs alone)."""
_FLUSH_AFTER_S = 0.25  # a partial batch runs when the next image is not prepared within this time


class _PixelBudget:
    """Bounds the pixels of images in flight; an image larger than the cap runs alone.

    Images acquire in input order (``ticket``), so a large image waiting for the
    budget never lets a later image overtake it: the images holding the budget are
    then all ahead of it in the pipeline, which always drains (no deadlock).
    """

    def __init__(self, cap: int) -> None:
        self._cap, self._used, self._next, self._closed = cap, 0, 0, False
        self.starved = False  # the next image waits for pixels held by earlier ones
        self._cond = threading.Condition()

    def acquire(self, ticket: int, n: int) -> None:
        with self._cond:
            while not self._closed and (ticket != self._next or (self._used and self._used + n > self._cap)):
                self.starved = ticket == self._next  # next in line, waiting only for pixels
                self._cond.wait()
            self.starved = False
            self._next += 1
            self._used += n
            self._cond.notify_all()

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every waiting reader (the stream is being closed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass(eq=False)
class StreamResult:
    """One item's result from :func:`predict_stream`.

    Attributes
    ----------
    item : the input item; index : its position in the input.
    error : the exception ``load`` or preprocessing raised (one of ``errors``), else None.
    image : the loaded image (only with ``keep_images``).
    preprocessed : the image the model saw, at the original size (only with ``keep_images``;
        the same array as ``image`` when there is no preprocessing).
    size : (H, W) of the loaded image (None if it could not be loaded).
    read_s, infer_s : seconds spent loading + preparing, and in the backend (batch time / batch size).
    """

    item: Any
    index: int
    error: BaseException | None = None
    image: np.ndarray | None = None
    preprocessed: np.ndarray | None = None
    size: tuple[int, int] | None = None
    read_s: float = 0.0
    infer_s: float = 0.0
    prepared: PreparedImage | None = field(default=None, repr=False)
    prob_small: np.ndarray | None = field(default=None, repr=False)
    _pixels: int = field(default=0, repr=False)
    _budget: _PixelBudget | None = field(default=None, repr=False)
    _predictor: Predictor | None = field(default=None, repr=False)

    def proba(self) -> ProbMap:
        """The (H, W) float32 probability map at the image's size (computed on call)."""
        if self.prob_small is None or self.prepared is None or self._predictor is None:
            raise RuntimeError(f"No probabilities for item {self.index}: it failed with {self.error!r}.")
        return self._predictor.to_image(self.prob_small, self.prepared)

    def release(self) -> None:
        """Return this item's pixels to the stream's budget (idempotent); see ``hold_pixels``."""
        if self._budget is not None and self._pixels:
            self._budget.release(self._pixels)
        self._pixels = 0

    def drop_arrays(self) -> None:
        """Forget the images and probabilities (keeps the metadata)."""
        self.image = self.preprocessed = self.prob_small = None


def predict_stream(
    predictor: Predictor | None,
    items: Iterable[Any],
    *,
    load: Callable[[Any], np.ndarray] | None = None,
    pixels: Callable[[Any], int] | None = None,
    errors: tuple[type[BaseException], ...] = (Exception,),
    workers: int = 2,
    keep_images: bool = False,
    hold_pixels: bool = False,
    max_inflight_pixels: int | None = None,
    infer_workers: int | None = None,
) -> Iterator[StreamResult]:
    """Yield one :class:`StreamResult` per item, predicting in batches while threads load ahead.

    Parameters
    ----------
    predictor : Predictor or None
        None: only load the items (reader threads, the pixel budget, ``errors``), for
        consumers that need the images but no probabilities (e.g. classifying with
        expert masks); the results come in input order, ``keep_images`` is implied.
    items : iterable
        Images, or anything ``load`` turns into an (H, W, 3) uint8 RGB image (e.g. paths).
    load : callable, optional
        ``load(item) -> image``, run in the reader threads; default: the item is the image.
    pixels : callable, optional
        ``pixels(item) -> int``, a cheap estimate of an item's pixel count (e.g. from the
        file header) used by the in-flight budget before the item is loaded; default 0.
    errors : tuple of exception types
        Raised by ``load`` or preprocessing, these become the result's ``error`` (the item
        is yielded without probabilities); other exceptions stop the stream.
    workers : int
        Reader threads.
    keep_images : bool
        Keep ``image`` and ``preprocessed`` on the results (e.g. for overlays or measurements).
    hold_pixels : bool
        False: an item's pixels leave the budget when it is yielded. True: they stay until
        the consumer calls :meth:`StreamResult.release` (for consumers that hand results
        to writer threads and want the budget to cover them too).
    max_inflight_pixels : int, optional
        The budget; default :data:`DEFAULT_INFLIGHT_PIXELS`.
    infer_workers : int, optional
        Backend calls run at the same time (each on ``batch_size`` inputs); default: the
        backend's ``concurrency`` (2 for ONNX Runtime on the CPU with its default threads,
        whose single-threaded calls side by side beat one two-threaded call; else 1).

    Notes
    -----
    Results are yielded in batch order. Closing the generator early cancels the pending
    reads and waits for the running ones.
    """
    workers = check_positive_int(workers, "workers")
    if infer_workers is None:
        infer_workers = predictor.backend.concurrency if predictor is not None else 1
    infer_workers = check_positive_int(infer_workers, "infer_workers")
    cap = DEFAULT_INFLIGHT_PIXELS if max_inflight_pixels is None else max_inflight_pixels
    budget = _PixelBudget(check_positive_int(cap, "max_inflight_pixels"))
    batch_size = predictor.batch_size if predictor is not None else 1
    pre = predictor.preprocess if predictor is not None else None
    keep_images = keep_images or predictor is None

    def load_one(ticket: int, item: Any) -> StreamResult:
        t0 = time.perf_counter()
        res = StreamResult(item, ticket, _budget=budget, _predictor=predictor)
        if pixels is not None:
            try:
                res._pixels = max(0, int(pixels(item)))
            except errors:
                res._pixels = 0  # load() raises the precise error below
        budget.acquire(ticket, res._pixels)
        try:
            image = check_rgb_image(load(item) if load is not None else item, "image")
            res.size = image.shape[:2]
            seen = pre(image) if pre is not None else image
            if predictor is not None:
                res.prepared = predictor.prepare_preprocessed(seen, size=res.size)
            if keep_images:
                res.image, res.preprocessed = image, seen
        except errors as exc:
            res.error = exc
        res.read_s = time.perf_counter() - t0
        return res

    def finish(res: StreamResult) -> StreamResult:
        if not hold_pixels:
            res.release()
        return res

    def run_batch(batch: list[StreamResult]) -> list[StreamResult]:
        t0 = time.perf_counter()
        probs = predictor.predict_prepared([r.prepared for r in batch])  # type: ignore[misc]
        dt = (time.perf_counter() - t0) / len(batch)
        for r, p in zip(batch, probs, strict=True):
            r.prob_small, r.infer_s = p, dt
            r.prepared = PreparedImage(np.empty((0,), np.float32), r.prepared.hw, r.prepared.size)  # type: ignore[union-attr]
        return [finish(r) for r in batch]

    lookahead = 2 * batch_size + workers
    pending = iter(enumerate(items))
    window: deque[Future[StreamResult]] = deque()
    buckets: dict[tuple[int, ...], list[StreamResult]] = {}
    running: deque[Future[list[StreamResult]]] = deque()  # backend calls in flight (infer_workers > 1)
    reader = ThreadPoolExecutor(workers, thread_name_prefix="skinseg-read")
    infer = ThreadPoolExecutor(infer_workers, thread_name_prefix="skinseg-infer") if infer_workers > 1 else None

    def dispatch(batch: list[StreamResult]) -> Iterator[StreamResult]:
        if infer is None:
            yield from run_batch(batch)
            return
        while len(running) >= infer_workers:
            yield from running.popleft().result()
        running.append(infer.submit(run_batch, batch))

    try:
        while True:
            while len(window) < lookahead and (nxt := next(pending, None)) is not None:
                window.append(reader.submit(load_one, *nxt))
            while running and running[0].done():
                yield from running.popleft().result()
            if not window:
                break
            head = window[0]
            if not head.done():
                if running:  # the backend is busy: take its results first (they free pixels too)
                    yield from running.popleft().result()
                    continue
                if buckets:
                    if not budget.starved:
                        wait_futures([head], timeout=_FLUSH_AFTER_S)
                    if not head.done():  # the readers are behind: run what we have
                        for shape in list(buckets):
                            yield from dispatch(buckets.pop(shape))
                        continue
            res = window.popleft().result()
            if res.error is not None or predictor is None:
                yield finish(res)
                continue
            shape = res.prepared.shape  # type: ignore[union-attr]
            bucket = buckets.setdefault(shape, [])
            bucket.append(res)
            if len(bucket) >= batch_size:
                yield from dispatch(buckets.pop(shape))
            elif sum(len(b) for b in buckets.values()) >= batch_size:
                largest = max(buckets, key=lambda s: len(buckets[s]))
                yield from dispatch(buckets.pop(largest))
        for shape in list(buckets):
            yield from dispatch(buckets.pop(shape))
        while running:
            yield from running.popleft().result()
    finally:
        for f in window:
            f.cancel()
        budget.close()
        reader.shutdown(wait=True, cancel_futures=True)
        if infer is not None:
            infer.shutdown(wait=True, cancel_futures=True)
