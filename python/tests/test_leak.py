"""No memory growth over 10,000 calls (resident set size, after a warm-up)."""
import os

import numpy as np
import pytest

import fastlstm

pytestmark = pytest.mark.skipif(os.environ.get("FASTLSTM_TEST_ASAN") == "1",
                                reason="under ASan its quarantine keeps freed memory resident: RSS says nothing")

CALLS = 10000
BOUND = 1 << 20  # bytes: a leak of 100 bytes per call would exceed it


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def grows(fn):
    for _ in range(500):
        fn()
    before = rss()
    for _ in range(CALLS):
        fn()
    return rss() - before


def test_run_and_step_do_not_leak():
    m = fastlstm.init(4, 8, 2, head="per_step", head_out=3, seed=1)
    x = np.ones((2, 3, 4), np.float32)
    s = m.session(max_batch=2)
    assert grows(lambda: m.run(x)) < BOUND
    assert grows(lambda: s.step(x[:, 0])) < BOUND


def test_errors_and_objects_do_not_leak():
    m = fastlstm.init(4, 8, 1, seed=1)
    bad = np.full((1, 2, 4), np.nan, np.float32)

    def fail():
        try:
            m.run(bad)
        except fastlstm.NonFiniteError:
            pass
    assert grows(fail) < BOUND
    assert grows(lambda: m.clone().session(max_batch=2).close()) < BOUND
