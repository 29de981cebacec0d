"""brainmri.shifts: the bench's acquisition shifts keep shape and range, are deterministic, and shift."""
from __future__ import annotations

import numpy as np
import pytest

from brainmri.shifts import BENCH, DEV
from tests.synthetic import scan

GREY = np.asarray(scan(seed=3, size=96))


@pytest.mark.parametrize("name", [*BENCH, *DEV])
def test_shape_range_and_determinism(name):
    shift = {**BENCH, **DEV}[name]
    a = shift(GREY.copy(), np.random.default_rng(7))
    b = shift(GREY.copy(), np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape[:2] == GREY.shape
    assert a.shape == ((*GREY.shape, 3) if name == "falsecolour" else GREY.shape)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[..., 0] if a.ndim == 3 else a, GREY)      # it does change the scan


def test_random_shifts_follow_the_seed():
    for name in ("rician", "ghosting"):
        a = BENCH[name](GREY, np.random.default_rng(1))
        b = BENCH[name](GREY, np.random.default_rng(2))
        assert not np.array_equal(a, b)


def test_bench_and_dev_are_disjoint_and_named_as_in_the_rule():
    assert set(BENCH) == {"rician", "gibbs", "ghosting", "aniso", "clahe", "histeq", "window", "falsecolour"}
    assert not set(BENCH) & set(DEV)


def test_some_properties_of_the_physics():
    rng = np.random.default_rng(0)
    assert BENCH["rician"](np.zeros((64, 64), np.uint8), rng).mean() > 10     # Rician noise floor > 0
    truncated = BENCH["gibbs"](GREY, rng)
    assert abs(float(truncated.mean()) - float(GREY.mean())) < 3                # low frequencies kept
    inverted = DEV["invert"](GREY, rng)
    assert inverted[0, 0] == GREY[0, 0] == 0                                    # background stays black
