"""The MAML family's policy network and sampling: trajectories per task with the linear feature
baseline's advantages, and one task's pre- and post-update batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import rollout
from metajax.envs.core import EnvParams
from metajax.learners.maml.core import Batch, step_alphas
from metajax.learners.ppo import normalize_advantages
from metajax.learners.value_baselines import first_episode_mask, linear_baseline_advantages
from metajax.networks import MLP, PolicyHead, log_prob, sample_action

if TYPE_CHECKING:
    from metajax.learners.maml.learner import Setup


class PolicyNetwork(nn.Module):
    """MLP policy: observation -> Gaussian (mean, log_std) or categorical logits."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (100, 100)
    activation: str = "relu"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array):
        features = MLP(self.hidden_sizes, activation=self.activation)(obs)
        return PolicyHead(self.action_dim, self.discrete, self.init_log_std)(features)


def trajectories(setup: Setup, policy_params, task: EnvParams, key: jax.Array, num_traj: int):
    """``num_traj`` trajectories of ``setup.horizon`` steps on one task: transitions [T, N]."""
    core, obs_dim = setup.core, setup.obs_dim
    env_params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_traj,) + x.shape), task)

    def policy(carry, obs, first, keys):
        del first
        dist = core.apply_fn(policy_params, jnp.reshape(obs, (num_traj, obs_dim)))
        action = jax.vmap(lambda k, d: sample_action(k, d, core.discrete))(keys, dist)
        return carry, action, {}

    _, transitions = rollout.run_from_key(setup.env, policy, env_params, key, setup.horizon)
    return transitions


def sample(setup: Setup, policy_params, task: EnvParams, key: jax.Array, num_traj: int) -> Batch:
    """``num_traj`` trajectories of ``setup.horizon`` steps on one task, with advantages."""
    config, core, obs_dim = setup.config, setup.core, setup.obs_dim
    transitions = trajectories(setup, policy_params, task, key, num_traj)
    obs = jnp.reshape(transitions.obs, (setup.horizon, num_traj, obs_dim)).astype(jnp.float32)
    done = transitions.done
    mask = first_episode_mask(done)  # [T, N]
    advantage, _ = linear_baseline_advantages(
        obs, transitions.reward, done, mask, config.gamma, config.baseline_reg
    )
    if config.normalize_advantages:
        advantage = normalize_advantages(advantage, mask) * mask
    dist = core.apply_fn(policy_params, obs)
    return Batch(
        obs=obs,
        action=transitions.action,
        mask=mask,
        advantage=advantage,
        old_log_prob=log_prob(dist, transitions.action, core.discrete),
        old_dist=dist,
        episode_return=jnp.sum(transitions.reward * mask, axis=0),
    )


def collect(setup: Setup, meta_params: dict, task: EnvParams, key: jax.Array) -> Batch:
    """Pre- and post-update batches of one task: leaves ``[K + 1, T, N, ...]``."""
    num_inner, num_traj = setup.config.num_inner_steps, setup.config.num_trajectories
    policy_params = meta_params["policy"]
    keys = jax.random.split(key, num_inner + 1)
    batches = []
    for k, alpha in enumerate(step_alphas(meta_params, num_inner, setup.train_lrs)):
        batch = sample(setup, policy_params, task, keys[k], num_traj)
        batches.append(batch)
        policy_params = setup.core.adapt(policy_params, batch, alpha)
    batches.append(sample(setup, policy_params, task, keys[num_inner], num_traj))
    return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)


def evaluate_task(setup: Setup, meta_params: dict, task: EnvParams, key: jax.Array) -> jax.Array:
    """Mean return on one task after 0..K inner steps (``eval_inner_steps``): ``[K + 1]``."""
    steps = setup.config.eval_inner_steps
    alphas = step_alphas(meta_params, steps, setup.eval_lrs)
    policy_params = meta_params["policy"]
    keys = jax.random.split(key, steps + 1)
    returns = []
    for k in range(steps + 1):
        batch = sample(setup, policy_params, task, keys[k], setup.config.eval_trajectories)
        returns.append(jnp.mean(batch.episode_return))
        if k < steps:
            policy_params = setup.core.adapt(policy_params, batch, alphas[k])
    return jnp.stack(returns)
