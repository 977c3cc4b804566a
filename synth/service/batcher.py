"""The model thread: every model call of the service runs here, and small sample requests
are merged into one call (micro-batching; docs/service.md, "Micro-batching").

Why one thread: a server that runs each request's model call on its own request thread
has N torch calls fighting for the cores (each with its own intra-op threads), and a
call for one record costs almost as much as a call for sixteen, since the work per
step is mostly fixed overhead. Here request threads only queue work and wait; one
worker thread, with `torch.set_num_threads(threads)`, runs it.

Merging: a sample request of at most `synth.model.EXACT_ROWS` records without `where`
waits up to `window_ms` for company; requests for the same model, temperature and
greedy flag are then generated together by `Model.sample_many` (up to `max_rows`
records per call). That call gives each request exactly the records it gets alone:
its own random streams and row-invariant kernels (synth/nn/draws.py,
synth/nn/rowwise.py), so seeds stay reproducible whatever the traffic.
Anything else (bigger requests, `where`, encode, decode, ...) runs as a plain call, in
arrival order.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchConfig:
    """How the model thread batches (server settings `batch_window_ms`, `batch_max_rows`,
    `model_threads`)."""

    window_ms: float = 2.0  # how long a small sample request waits for others (0: no merging)
    max_rows: int = 64  # records in one merged model call
    threads: int = 0  # torch intra-op threads of the model thread (0: leave torch's default)


@dataclass
class _Sample:
    model: Any
    n: int
    seed: int
    temperature: float | None
    greedy: bool
    future: Future
    arrived: float
    then: Callable[[list], Any] | None = None  # applied to the records on the model thread

    def finish(self, records: list) -> Any:
        return self.then(records) if self.then is not None else records

    def key(self) -> tuple:
        return (id(self.model), self.temperature, self.greedy)


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future


class ModelWorker:
    """One thread that runs the service's model calls, merging small sample requests."""

    def __init__(self, cfg: BatchConfig = BatchConfig()):
        self.cfg = cfg
        self._queue: queue.Queue = queue.Queue()
        self._held: deque = deque()  # taken from the queue while batching, not yet run
        self._closed = False
        self.calls = 0  # model calls made (a merged batch counts once), for tests and stats
        self.merged = 0  # requests that ran in a batch with others
        self._thread = threading.Thread(target=self._run, name="synth-model", daemon=True)
        self._thread.start()

    # -- what request threads call -------------------------------------------------------
    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run fn() on the model thread; the future holds its result or exception."""
        future: Future = Future()
        self._put(_Call(fn, future))
        return future

    def call(self, fn: Callable[[], Any]) -> Any:
        return self.submit(fn).result()

    def sample(self, model: Any, n: int, seed: int, temperature: float | None = None,
               greedy: bool = False) -> list:
        """`model.sample(n, seed=seed, ...)`, merged with concurrent small requests when it can be."""
        return self.sample_future(model, n, seed, temperature, greedy).result()

    def sample_future(self, model: Any, n: int, seed: int, temperature: float | None = None,
                      greedy: bool = False, then: Callable[[list], Any] | None = None) -> Future:
        """Like `sample`, without waiting (streams ask for their next chunk ahead). With `then`,
        the future holds then(records), computed on the model thread."""
        from synth.model import EXACT_ROWS

        item = _Sample(model, n, seed, temperature, greedy, Future(), time.monotonic(), then)
        if self.cfg.window_ms <= 0 or not 0 < n <= EXACT_ROWS:
            return self.submit(lambda: item.finish(model.sample(n, seed=seed, temperature=temperature,
                                                                greedy=greedy)))
        self._put(item)
        return item.future

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._thread.join(10)

    def _put(self, item: Any) -> None:
        if self._closed:
            raise RuntimeError("the model thread is closed")
        self._queue.put(item)

    # -- the model thread ----------------------------------------------------------------
    def _next(self, timeout: float | None = None) -> Any:
        if self._held:
            return self._held.popleft()
        return self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()

    def _run(self) -> None:
        if self.cfg.threads > 0:
            import torch

            torch.set_num_threads(self.cfg.threads)
        while True:
            item = self._next()
            if item is None:
                return
            if isinstance(item, _Call):
                if item.future.set_running_or_notify_cancel():  # a stream that went away cancels its next chunk
                    self.calls += 1
                    _settle(item.future, item.fn)
            else:
                batch = [s for s in self._gather(item) if s.future.set_running_or_notify_cancel()]
                if batch:
                    self._run_batch(batch)

    def _gather(self, first: _Sample) -> list[_Sample]:
        """`first` and the compatible requests that arrive within its window (up to max_rows)."""
        batch, rows, others = [first], first.n, []
        deadline = first.arrived + self.cfg.window_ms / 1000.0
        while rows < self.cfg.max_rows:
            try:
                item = self._next(deadline - time.monotonic())
            except queue.Empty:
                break
            if isinstance(item, _Sample) and item.key() == first.key() and rows + item.n <= self.cfg.max_rows:
                batch.append(item)
                rows += item.n
            else:
                others.append(item)  # runs after this batch, in arrival order
                if item is None:
                    break
        self._held.extendleft(reversed(others))
        return batch

    def _run_batch(self, batch: list[_Sample]) -> None:
        first = batch[0]
        self.calls += 1
        if len(batch) > 1:
            self.merged += len(batch)
        try:
            results = first.model.sample_many([(s.n, s.seed) for s in batch], first.temperature, first.greedy)
        except Exception:  # noqa: BLE001 - one request's problem must not fail the others: run each alone
            log.debug("merged sample failed; running its %d requests one by one", len(batch), exc_info=True)
            for s in batch:
                _settle(s.future, lambda s=s: s.finish(s.model.sample_many([(s.n, s.seed)], s.temperature,
                                                                           s.greedy)[0]))
            return
        for s, records in zip(batch, results):
            _settle(s.future, lambda s=s, records=records: s.finish(records))


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    try:
        future.set_result(fn())
    except BaseException as e:  # noqa: BLE001 - handed to the waiting request thread
        future.set_exception(e)
