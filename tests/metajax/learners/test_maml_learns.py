"""MAML, ProMP and E-MAML learn 2D navigation; the sharded step equals the one-device step.

Short runs (nav2d with a 20-step horizon, 10 tasks x 10 trajectories, a (32, 32) policy,
15 meta-iterations); the paper-scale run lives in benchmarks/maml_nav2d.py.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import metajax.envs as envs
from metajax import learners
from tests.metajax.learner_checks import check_sharded_matches_single

SMALL = dict(
    num_tasks=10,
    num_trajectories=10,
    hidden_sizes=(32, 32),
    eval_inner_steps=1,
    eval_trajectories=10,
)


@pytest.mark.parametrize(
    "name, options",
    [
        ("maml", {}),
        ("promp", {"outer_lr": 1e-2}),  # 10x the paper's meta lr: 15 iterations, not 500
        ("emaml", {}),
    ],
)
def test_learner_improves_post_adaptation_return_on_2d_navigation(name, options):
    env, tasks = envs.make("nav2d", horizon=20)
    config_cls, make_learner = learners.get(name)
    learner = make_learner(config_cls(**SMALL, **options), env, tasks)
    state = learner.init(jax.random.key(0))
    step, evaluate = jax.jit(learner.train_step), jax.jit(learner.evaluate)
    test_tasks = tasks.test_tasks(20)
    before = np.asarray(evaluate(state, jax.random.key(7), test_tasks)).mean(0)  # [K + 1]
    for i in range(15):
        state, _ = step(state, jax.random.key(i))
    after = np.asarray(evaluate(state, jax.random.key(7), test_tasks)).mean(0)
    # measured: post-adaptation return -10.5 before -> about -4.5 after; adaptation gains ~4
    assert after[1] > before[1] + 3.0, (before, after)
    assert after[1] > after[0] + 1.5, (before, after)


@pytest.mark.parametrize("name, outer, steps", [("maml", "trpo", 1), ("promp", "ppo", 2)])
def test_sharded_step_equals_single_device_step(name, outer, steps):
    options = dict(
        num_tasks=8,
        num_trajectories=3,
        hidden_sizes=(8,),
        outer=outer,
        exploration_weight=0.5,
        inner_kl_coeff=1e-3,
        # float32 CG on this tiny, nearly singular Fisher (6-step episodes near the origin)
        # turns summation-order rounding (1e-7) into percent-level step differences at
        # damping 1e-5, and after one TRPO step even at 0.1: one step, damping 0.1, is exact
        cg_damping=0.1,
    )
    result = check_sharded_matches_single(name, "nav2d", options, {"horizon": 6}, steps=steps)
    assert result["ok"]
