"""The MAML-family learner on a tiny in-file point env: TRPO/PPO steps, Meta-SGD, evaluation
shape, several inner steps, checkpointable state, one-line config errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import spaces
from jax.flatten_util import ravel_pytree

from metajax.envs.core import MetaEnv, TaskDistribution
from metajax.errors import ConfigError
from metajax.learners import maml

# ----------------------------------------------------------------------------- the learner


@struct.dataclass
class _Goal:
    goal: jax.Array  # [2]


@struct.dataclass
class _PointState:
    time: jax.Array
    pos: jax.Array


class _TinyPoint(MetaEnv):
    """A 10-step 2D point mass that moves by its clipped action toward a task goal."""

    horizon = 10

    def reset_env(self, key, params):
        return jnp.zeros((2,)), _PointState(time=jnp.int32(0), pos=jnp.zeros((2,)))

    def step_env(self, key, state, action, params):
        pos = state.pos + jnp.clip(action, -0.1, 0.1)
        distance = jnp.linalg.norm(pos - params.goal)
        return pos, _PointState(state.time + 1, pos), -distance, distance < 0.01, {}

    def observation_space(self, params=None):
        return spaces.Box(-jnp.inf, jnp.inf, (2,), jnp.float32)

    def action_space(self, params=None):
        return spaces.Box(-0.1, 0.1, (2,), jnp.float32)


def _tiny_env():
    def sample(key):
        return _Goal(jax.random.uniform(key, (2,), minval=-0.5, maxval=0.5))

    return _TinyPoint(), TaskDistribution(sample, num_test_tasks=8)


SMALL = dict(num_tasks=4, num_trajectories=4, hidden_sizes=(8,), eval_trajectories=4)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"outer": "sgd"}, "unknown outer optimizer"),
        ({"inner_estimator": "dice"}, "unknown inner_estimator"),
        ({"num_inner_steps": 0}, "num_inner_steps"),
        ({"activation": "nope"}, "unknown activation"),
        ({"cg_subsample": 0.0}, "cg_subsample"),
    ],
)
def test_bad_config_raises_one_line(options, message):
    env, tasks = _tiny_env()
    with pytest.raises(ConfigError, match=message) as error:
        maml.make_learner(maml.Config(**options), env, tasks)
    assert "\n" not in str(error.value)


def test_trpo_train_step_respects_kl_and_evaluate_has_k_plus_one_columns():
    env, tasks = _tiny_env()
    config = maml.Config(**SMALL, num_inner_steps=2, eval_inner_steps=1, max_kl=0.02)
    learner = maml.make_learner(config, env, tasks)
    state = learner.init(jax.random.key(0))
    step = jax.jit(learner.train_step)
    for i in range(2):
        state, metrics = step(state, jax.random.key(i))
        assert 0.0 < float(metrics["kl"]) <= 0.02
        assert float(metrics["loss_after"]) < float(metrics["loss"])
    assert int(state.step) == 2
    for leaf in jax.tree.leaves(state):  # checkpointable: arrays only, no PRNG keys
        assert isinstance(leaf, jax.Array) and not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    returns = jax.jit(learner.evaluate)(state, jax.random.key(1), tasks.test_tasks(3))
    assert returns.shape == (3, 2) and bool(jnp.all(jnp.isfinite(returns)))
    assert learner.adaptation_unit == "gradient step"
    assert learner.env_steps_per_update == 4 * 4 * 10 * 3


def test_trpo_with_subsampled_fisher_products_and_meta_sgd_keeps_the_kl_bound():
    # cg_subsample: the Fisher products use half the tasks (an inexact option; default exact);
    # the line search still checks the KL on every task.
    env, tasks = _tiny_env()
    config = maml.Config(**SMALL, cg_subsample=0.5, learn_inner_lr=True, max_kl=0.02)
    learner = maml.make_learner(config, env, tasks)
    state = learner.init(jax.random.key(0))
    new_state, metrics = jax.jit(learner.train_step)(state, jax.random.key(1))
    assert 0.0 < float(metrics["kl"]) <= 0.02
    assert float(metrics["loss_after"]) < float(metrics["loss"])
    before = ravel_pytree(state.params["inner_lr"])[0]
    assert float(jnp.max(jnp.abs(ravel_pytree(new_state.params["inner_lr"])[0] - before))) > 0


def test_ppo_outer_with_meta_sgd_updates_the_learning_rates():
    env, tasks = _tiny_env()
    config = maml.Config(**SMALL, outer="ppo", learn_inner_lr=True, outer_lr=1e-2)
    learner = maml.make_learner(config, env, tasks)
    state = learner.init(jax.random.key(0))
    new_state, metrics = jax.jit(learner.train_step)(state, jax.random.key(1))
    before = ravel_pytree(state.params["inner_lr"])[0]
    after = ravel_pytree(new_state.params["inner_lr"])[0]
    np.testing.assert_allclose(before, 0.1)
    assert float(jnp.max(jnp.abs(after - before))) > 1e-4
    assert float(metrics["loss_after"]) < float(metrics["loss"])
