"""The MAML family's task representation for ``metajax.inference``: the adapted parameters'
change ``theta_k - theta_0`` after each inner step of the evaluation protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from metajax.envs.core import EnvParams, num_tasks
from metajax.learners import representation
from metajax.learners.maml import sampling
from metajax.learners.maml.core import step_alphas
from metajax.learners.value_baselines import first_episode_mask
from metajax.types import Transition

if TYPE_CHECKING:
    from metajax.learners.maml.learner import MAMLState, Setup


def _trajectory_major(transitions: Transition) -> Transition:
    """[T, N, ...] -> [N T, ...]: trajectory after trajectory, one long history."""
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:]), transitions)


def represent_task(setup: Setup, meta_params: dict, task: EnvParams, key: jax.Array):
    """``evaluate_task``'s adaptation on one task: ``theta_k - theta_0`` flat [K + 1, F] (row 0
    is zero), the history [K N T] of the K inner steps' batches and its mask."""
    steps, num_traj = setup.config.eval_inner_steps, setup.config.eval_trajectories
    alphas = step_alphas(meta_params, steps, setup.eval_lrs)
    theta_0 = params = meta_params["policy"]
    keys = jax.random.split(key, steps + 1)  # as evaluate_task
    deltas, histories = [jax.tree.map(jnp.zeros_like, theta_0)], []
    for k in range(steps):
        batch = sampling.sample(setup, params, task, keys[k], num_traj)
        histories.append(sampling.trajectories(setup, params, task, keys[k], num_traj))
        params = setup.core.adapt(params, batch, alphas[k])
        deltas.append(jax.tree.map(jnp.subtract, params, theta_0))
    features = representation.flatten_rows(jax.tree.map(lambda *x: jnp.stack(x), *deltas), 1)
    history = jax.tree.map(lambda *x: jnp.concatenate(x), *map(_trajectory_major, histories))
    mask = jnp.concatenate([first_episode_mask(h.done).T.reshape(-1) for h in histories])
    return representation.project(features), representation.strip_extras(history), mask > 0


def represent(setup: Setup, state: MAMLState, key: jax.Array, tasks: EnvParams):
    """The adapted parameters' change after each inner step on each task: ``[n, K + 1, F]``
    (randomly projected to at most ``representation.MAX_FEATURES``); row k has seen the K
    batches' first k (``k * eval_trajectories * horizon`` steps of history)."""
    if setup.config.eval_inner_steps < 1:
        raise ValueError("the MAML representation needs eval_inner_steps >= 1")
    n = num_tasks(tasks)
    features, history, mask = jax.lax.map(
        lambda args: represent_task(setup, state.params, *args),
        (tasks, jax.random.split(key, n)),
        batch_size=setup.config.eval_task_chunk,
    )  # [n, K + 1, F], [n, L, ...], [n, L]
    rows = features.shape[1]
    per_step = setup.config.eval_trajectories * setup.horizon
    return representation.Representation(
        features=features,
        valid=jnp.ones((n, rows), bool),
        seen=jnp.arange(rows) * per_step,
        unit=jnp.broadcast_to(jnp.arange(rows), (n, rows)),
        transitions=jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), history),
        mask=mask.T,
    )
