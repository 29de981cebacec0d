"""Request batching: concurrent `explain` calls share one forward pass.

    from brainmri.batching import Batcher
    with Batcher(Predictor.from_checkpoint("checkpoints/resnet50.safetensors")) as engine:
        engine.explain("scan.jpg", method="gradcam").label      # same as predictor.explain

A server thread per request calls `Batcher.explain`, which prepares its image *in the
caller's thread* (so decoding runs in parallel and a bad file raises there, to that caller
alone) and waits on a future. A worker thread collects requests for up to `max_wait_ms`
after the first arrives (or until `max_batch` are waiting), groups them by CAM method and
target, and runs one `Predictor.explain_batch` per group. With `workers` > 1, that many worker
threads do this side by side, each gathering its own batch; hook-based methods (Score-CAM,
Ablation-CAM) still run one batch at a time. Batching pays because a batched forward costs
less per image than a batch of 1, and two forwards in flight can keep a small CPU's cores
busier than one (how much, per machine: docs/benchmarks.md). The price is up to
`max_wait_ms` of extra latency for a request that arrives alone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from . import cam as cams
from .io import ImageSource
from .overlay import DEFAULT_ALPHA, blend
from .predictor import Explanation, Predictor
from .presets import Prepared


@dataclass(frozen=True)
class _Request:
    prepared: Prepared
    method: str
    target: int | None        # class index, or None for the predicted class
    alpha: float
    future: Future


_STOP = object()


def predictor_of(engine):
    """The `Predictor` an engine runs: a Batcher's own, else the engine itself."""
    return getattr(engine, "predictor", engine)


class Batcher:
    """A thread-safe engine with `Predictor.explain`'s signature and results.

    It has the attributes a `brainmri.service.Engine` needs (`classes`, `meta`,
    `default_method`), so it can stand in for the predictor it wraps. `close()` finishes the
    requests already queued, then stops the worker; later calls raise RuntimeError.
    """

    def __init__(self, predictor: Predictor, max_batch: int = 8, max_wait_ms: float = 5.0,
                 workers: int = 1):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.predictor, self.max_batch, self.max_wait = predictor, max_batch, max_wait_ms / 1000
        self.batches = 0                    # explain_batch calls made, for tests and monitoring
        self._pending = 0
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._hooks = threading.Lock()      # hook-based CAM methods: one batch at a time
        self._closed = False
        self._workers = [threading.Thread(target=self._run, name=f"brainmri-batcher-{i}", daemon=True)
                         for i in range(workers)]
        for worker in self._workers:
            worker.start()

    @property
    def workers(self) -> int:
        """Worker threads started (batches that can be in flight at once)."""
        return len(self._workers)

    @property
    def running(self) -> int:
        """Worker threads still alive (0 once `close` has returned)."""
        return sum(w.is_alive() for w in self._workers)

    # The Engine protocol, delegated.
    @property
    def classes(self) -> tuple[str, ...]:
        return self.predictor.classes

    @property
    def meta(self) -> dict:
        return self.predictor.meta

    @property
    def default_method(self) -> str:
        return self.predictor.default_method

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def model(self):
        return self.predictor.model

    @property
    def device(self):
        return self.predictor.device

    @property
    def pending(self) -> int:
        """Requests accepted and not yet answered."""
        return self._pending

    def _answered(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def explain(self, image: ImageSource, method: str | None = None,
                target: str | int | None = None, alpha: float = DEFAULT_ALPHA) -> Explanation:
        """As `Predictor.explain`. Raises ImageLoadError / ValueError here, in the caller."""
        method = cams.canonical_method(method or self.default_method)
        index = None if target is None else self.predictor.target_index(target, None, 0)
        prepared = self.predictor.prepare([image])[0]
        future: Future = Future()
        with self._lock:                    # no request may slip in behind the stop marker
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._pending += 1
            future.add_done_callback(self._answered)
            self._queue.put(_Request(prepared, method, index, float(alpha), future))
        return future.result()

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._workers:         # one marker each, behind every request
                self._queue.put(_STOP)
        for worker in self._workers:
            worker.join(timeout)

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """`first` plus what arrives within max_wait of it (up to max_batch); True: stop after."""
        requests, end = [first], time.monotonic() + self.max_wait
        while len(requests) < self.max_batch:
            try:        # timeout 0 still takes what is queued already
                item = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return requests, True
            requests.append(item)
        return requests, False

    def _run(self) -> None:
        # The stop marker is queued last (under the lock), so every request is served first.
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            requests, stop = self._collect(first)
            groups: dict[tuple[str, int | None], list[_Request]] = {}
            for r in requests:
                groups.setdefault((r.method, r.target), []).append(r)
            for (method, target), group in groups.items():
                try:
                    self._serve(group, method, target)
                except BaseException as error:  # never leave a caller waiting for ever
                    for r in group:
                        if not r.future.done():
                            r.future.set_exception(error)

    def _serve(self, group: list[_Request], method: str, target: int | None) -> None:
        alpha = group[0].alpha
        with self._lock:
            self.batches += 1
        # Fast and fused methods use no hooks, so workers may run them side by side.
        hooks = contextlib.nullcontext() if method in cams.HOOK_FREE else self._hooks
        try:
            with hooks:
                results = self.predictor.explain_batch(method=method, target=target, alpha=alpha,
                                                       prepared=[r.prepared for r in group])
        except Exception as error:          # noqa: BLE001 - delivered to the caller
            if len(group) > 1:              # find the one that failed; the others still succeed
                for r in group:
                    self._serve([r], method, target)
            else:
                group[0].future.set_exception(error)
            return
        for r, e in zip(group, results):
            if r.alpha != alpha:            # only the blend depends on alpha
                e = dataclasses.replace(e, overlay=blend(e.grey, e.heatmap, r.alpha))
            r.future.set_result(e)
