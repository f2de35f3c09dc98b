"""The learner contract, checked once for every registered learner.

Each learner runs at its tiny golden config (``tests/metajax/golden/record.py``): init, two
jitted train steps that trace once, finite state leaves and metrics, the headline return metric
present, and ``evaluate`` shaped ``[num_tasks, K]`` (episodes) or ``[num_tasks, K + 1]``
(gradient steps, k = 0 first). A new learner is picked up by adding its golden case.
"""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

import metajax.envs as envs
from metajax import learners
from tests.metajax.golden.record import CASES

EVAL_TASKS = 3
# adaptation unit -> (config fields that may hold K, columns of evaluate given K)
ADAPTATION_COLUMNS = {
    "episode": (("episodes_per_trial", "eval_episodes"), lambda k: k),
    "gradient step": (("eval_inner_steps",), lambda k: k + 1),
}


def _case_for(name: str) -> tuple[str, dict, dict]:
    """The first golden case of learner ``name``: (env, env options, learner options)."""
    for learner_name, env_name, env_options, options in CASES.values():
        if learner_name == name:
            return env_name, env_options, options
    raise AssertionError(f"no golden case for learner '{name}': add one to golden/record.py")


def _expected_columns(unit: str, config) -> int:
    assert unit in ADAPTATION_COLUMNS, f"unknown adaptation_unit '{unit}'"
    fields, columns = ADAPTATION_COLUMNS[unit]
    for field in fields:
        if hasattr(config, field):
            return columns(getattr(config, field))
    raise AssertionError(f"{type(config).__name__} has none of {fields} (K of '{unit}')")


def _assert_finite(tree, what: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.inexact):
            assert np.all(np.isfinite(leaf)), f"{what}{jax.tree_util.keystr(path)} is not finite"


@pytest.mark.parametrize("name", learners.names())
def test_learner_contract(name):
    env_name, env_options, options = _case_for(name)
    env, tasks = envs.make(env_name, **env_options)
    config_cls, make_learner = learners.get(name)
    config = config_cls(**options)
    learner = make_learner(config, env, tasks)
    assert learner.name == name

    def train_step(state, key):
        return learner.train_step(state, key)

    chex.clear_trace_counter()
    step = jax.jit(chex.assert_max_traces(train_step, n=1))
    state = jax.jit(learner.init)(jax.random.key(0))
    for t in range(2):
        state, metrics = step(state, jax.random.fold_in(jax.random.key(1), t))
    _assert_finite(state, "state")
    _assert_finite(metrics, "metrics")
    assert learner.return_metric in metrics, (learner.return_metric, sorted(metrics))
    assert all(np.ndim(v) == 0 for v in metrics.values()), "metrics must be scalars"

    returns = jax.jit(learner.evaluate)(state, jax.random.key(2), tasks.test_tasks(EVAL_TASKS))
    columns = _expected_columns(learner.adaptation_unit, config)
    assert returns.shape == (EVAL_TASKS, columns)
    _assert_finite(returns, "evaluate")


def test_unknown_learner_is_a_config_error():
    from metajax.errors import ConfigError

    with pytest.raises(ConfigError, match="known learners: emaml, maml"):
        learners.get("nope")
