"""brainmri.batching: concurrent explain calls share forward passes and give unbatched results."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from brainmri.batching import Batcher, predictor_of
from brainmri.io import ImageLoadError
from brainmri.overlay import colourise
from brainmri.predictor import Predictor

from .synthetic import scan

LONG_WAIT_MS = 30_000      # a batch then closes only when max_batch requests are in: deterministic


@pytest.fixture(scope="module")
def predictors(tiny_checkpoints) -> dict[str, Predictor]:
    return {arch: Predictor.from_checkpoint(path, device="cpu")
            for arch, path in tiny_checkpoints.items()}


@pytest.fixture
def counted(predictors, monkeypatch):
    """The baseline predictor, recording the batch size of every explain_batch call."""
    predictor, sizes = predictors["baseline"], []
    original = predictor.explain_batch

    def explain_batch(*args, prepared=None, **kwargs):
        if prepared is not None:            # the batcher's calls, not predictor.explain's
            sizes.append(len(prepared))
        return original(*args, prepared=prepared, **kwargs)

    monkeypatch.setattr(predictor, "explain_batch", explain_batch)
    return predictor, sizes


def concurrently(fn, inputs: list) -> list:
    """fn(x) for every x, each in its own thread, started together; exceptions are returned."""
    results: list = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def call(i):
        start.wait()
        try:
            results[i] = fn(inputs[i])
        except Exception as error:         # noqa: BLE001 - the test inspects it
            results[i] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def assert_same(a, b) -> None:
    assert a.method == b.method and a.target == b.target
    assert a.prediction.label == b.prediction.label
    for c, p in a.prediction.probabilities.items():
        assert b.prediction.probabilities[c] == pytest.approx(p, abs=1e-5)
    assert np.abs(a.heatmap - b.heatmap).max() < 1e-4
    # Heatmaps that differ by float rounding (a batch of 4 and a batch of 1 run different CPU
    # kernels) can fall either side of one of the colour map's 256 levels: the overlays may then
    # differ by one jet step (at most full opacity), plus rounding, and by no more.
    jet = colourise(np.linspace(0, 1, 256, dtype=np.float32)[None]).astype(int)
    step = np.abs(np.diff(jet, axis=1)).max()
    assert np.abs(a.overlay.astype(int) - b.overlay).max() <= step + 1
    assert np.array_equal(a.grey, b.grey)


@pytest.mark.parametrize("arch", ["baseline", "resnet50"])
def test_concurrent_results_equal_unbatched_in_one_forward(predictors, arch, monkeypatch):
    predictor = predictors[arch]
    images = [scan(i, size=80 + 10 * i, rgb=i % 2 == 1) for i in range(4)]
    expected = [predictor.explain(im, method="gradcam++") for im in images]
    with Batcher(predictor, max_batch=4, max_wait_ms=LONG_WAIT_MS) as batcher:
        got = concurrently(lambda im: batcher.explain(im, method="Grad-CAM++"), images)
        assert batcher.batches == 1
    for e, g in zip(expected, got):
        assert_same(e, g)


def test_groups_by_method_and_target_and_honours_each_alpha(counted):
    predictor, sizes = counted
    calls = [dict(method="gradcam"), dict(method="gradcam", alpha=0.9),
             dict(method="eigencam"), dict(method="gradcam", target="meningioma"),
             dict(method="gradcam", target=1), dict(method="gradcam")]
    with Batcher(predictor, max_batch=len(calls), max_wait_ms=LONG_WAIT_MS) as batcher:
        got = concurrently(lambda kw: batcher.explain(scan(3), **kw), calls)
    assert sorted(sizes) == [1, 2, 3]       # gradcam x3 | eigencam | target index 1 == meningioma
    for kw, g in zip(calls, got):
        assert_same(predictor.explain(scan(3), **kw), g)


def test_a_bad_input_fails_only_its_own_call(counted):
    predictor, sizes = counted
    inputs = [scan(1), b"not an image", scan(2), scan(3)]
    with Batcher(predictor, max_batch=3, max_wait_ms=LONG_WAIT_MS) as batcher:
        got = concurrently(batcher.explain, inputs)
    assert isinstance(got[1], ImageLoadError)          # raised in the caller, never queued
    assert sizes == [3]
    for i in (0, 2, 3):
        assert_same(predictor.explain(inputs[i]), got[i])


def test_a_failing_batch_is_retried_one_by_one(counted, monkeypatch):
    predictor, sizes = counted
    counting = predictor.explain_batch

    def explain_batch(*args, prepared=None, **kwargs):   # fails on any batch with a 77-px image
        if any(p.grey.shape == (77, 77) for p in prepared):
            sizes.append(len(prepared))
            raise RuntimeError("boom")
        return counting(*args, prepared=prepared, **kwargs)

    monkeypatch.setattr(predictor, "explain_batch", explain_batch)
    with Batcher(predictor, max_batch=3, max_wait_ms=LONG_WAIT_MS) as batcher:
        got = concurrently(batcher.explain, [scan(1, size=64), scan(2, size=77), scan(3, size=90)])
    assert isinstance(got[1], RuntimeError) and str(got[1]) == "boom"
    assert got[0].grey.shape == (64, 64) and got[2].grey.shape == (90, 90)
    assert sizes == [3, 1, 1, 1]


def test_bad_method_or_target_raise_in_the_caller(predictors):
    with Batcher(predictors["baseline"]) as batcher:
        with pytest.raises(ValueError, match="unknown CAM method 'deeplift'"):
            batcher.explain(scan(0), method="deeplift")
        with pytest.raises(ValueError, match="unknown target class 'astrocytoma'"):
            batcher.explain(scan(0), target="astrocytoma")
        assert batcher.batches == 0


def test_close_serves_queued_requests_then_refuses(predictors):
    predictor = predictors["baseline"]
    batcher = Batcher(predictor, max_batch=8, max_wait_ms=LONG_WAIT_MS)
    assert batcher.classes == predictor.classes and batcher.meta is predictor.meta
    assert batcher.default_method == predictor.default_method
    results: list = []
    threads = [threading.Thread(target=lambda i=i: results.append(batcher.explain(scan(i))))
               for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while batcher.pending < 3 and time.monotonic() < deadline:   # all in, waiting for 8
        time.sleep(0.01)
    assert batcher.pending == 3
    batcher.close()                        # does not wait out max_wait: the stop ends the batch
    for t in threads:
        t.join(10)
    assert len(results) == 3 and batcher.batches == 1 and batcher.pending == 0
    assert batcher.running == 0
    with pytest.raises(RuntimeError, match="closed"):
        batcher.explain(scan(0))
    batcher.close()                        # idempotent


def test_two_workers_run_their_batches_side_by_side(predictors, monkeypatch):
    """workers=2: each worker gathers its own batch, and the two forwards overlap in time."""
    predictor = predictors["baseline"]
    images = [scan(i, size=64 + 4 * i) for i in range(6)]
    expected = [predictor.explain(im) for im in images]
    original, sizes = predictor.explain_batch, []
    both = threading.Barrier(2, timeout=30)       # passes only while the other batch runs too

    def explain_batch(*args, prepared=None, **kwargs):
        sizes.append(len(prepared))
        both.wait()
        return original(*args, prepared=prepared, **kwargs)

    monkeypatch.setattr(predictor, "explain_batch", explain_batch)
    batcher = Batcher(predictor, max_batch=3, max_wait_ms=LONG_WAIT_MS, workers=2)
    with batcher:
        got = concurrently(batcher.explain, images)
    assert sorted(sizes) == [3, 3] and batcher.batches == 2
    assert batcher.running == 0
    for e, g in zip(expected, got):
        assert_same(e, g)


def test_hook_based_methods_run_one_batch_at_a_time(predictors, monkeypatch):
    """Score-CAM registers hooks on the model: two workers must not run it at once."""
    predictor = predictors["baseline"]
    original, active, peak = predictor.explain_batch, [0], [0]
    lock = threading.Lock()

    def explain_batch(*args, prepared=None, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)                            # long enough for the other worker to try
        try:
            return original(*args, prepared=prepared, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(predictor, "explain_batch", explain_batch)
    with Batcher(predictor, max_batch=1, max_wait_ms=0, workers=2) as batcher:
        got = concurrently(lambda im: batcher.explain(im, method="scorecam"), [scan(1), scan(2)])
    assert peak[0] == 1 and batcher.batches == 2
    assert all(g.method == "scorecam" and g.heatmap.shape == g.grey.shape for g in got)


def test_workers_must_be_positive(predictors):
    with pytest.raises(ValueError, match="workers must be at least 1"):
        Batcher(predictors["baseline"], workers=0)


def test_predictor_of_finds_the_predictor_behind_a_batcher(predictors):
    predictor = predictors["baseline"]
    with Batcher(predictor) as batcher:
        assert predictor_of(batcher) is predictor
    assert predictor_of(predictor) is predictor
