"""Every learner's first updates and evaluation returns equal the recorded golden values.

The golden file was recorded on CPU before the house redesign (``record.py``). Equality is
bit-for-bit in practice; the comparison allows 1e-6 relative (and 1e-9 absolute, for values that
are exactly zero in one run) because XLA may reorder a float32 reduction when a refactor changes
how a program is traced, which moves the last bit without changing the algorithm.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.metajax.golden.record import CASES, PATH, run_case

GOLDEN = json.loads(PATH.read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_learner_matches_golden_metrics(name):
    assert name in GOLDEN, f"no golden record for {name}: run python -m tests.metajax.golden.record"
    got, want = run_case(name), GOLDEN[name]
    assert len(got["metrics"]) == len(want["metrics"])
    for t, (g, w) in enumerate(zip(got["metrics"], want["metrics"], strict=True)):
        assert sorted(g) == sorted(w), f"update {t}: metric names changed"
        for key in w:
            np.testing.assert_allclose(
                g[key], w[key], rtol=1e-6, atol=1e-9, err_msg=f"{name} update {t} {key}"
            )
    np.testing.assert_allclose(
        np.asarray(got["eval_returns"]),
        np.asarray(want["eval_returns"]),
        rtol=1e-6,
        atol=1e-9,
        err_msg=f"{name} evaluation returns",
    )


def test_every_registered_learner_has_a_golden_case():
    from metajax import learners

    covered = {learner for learner, *_ in CASES.values()}
    assert covered == set(learners.names())
