"""Soft actor-critic (Haarnoja et al. 2018) alone: the update of ``soft_ac`` on observations.

Plain single-task SAC: ``num_tasks`` parallel envs, each with its own circular replay buffer
(so the buffers shard over devices like PEARL's), all on one task (``same_task=True``) or each
on a task drawn once at init. One ``train_step`` collects ``steps_per_update`` steps per env and
then takes ``gradient_steps`` gradient steps in a scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax import distributed, replay, rollout
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution, obs_size
from metajax.envs.wrappers import scale_unit_action
from metajax.errors import ConfigError
from metajax.learners import soft_ac
from metajax.learners.base import Learner
from metajax.learners.soft_ac import OptStates, Params


@dataclass(frozen=True)
class Config:
    """SAC hyperparameters; defaults are small enough for a CPU."""

    num_tasks: int = 8  # parallel envs, one replay buffer each (sharded over devices)
    same_task: bool = True  # all envs on one task; False: each env its own task drawn at init
    steps_per_update: int = 4  # env steps per env per train_step
    gradient_steps: int = 4  # gradient steps per train_step (one lax.scan)
    batch_size: int = 256  # transitions per gradient step, split evenly over the envs' buffers
    buffer_capacity: int = 50_000  # per env
    warmup_steps: int = 200  # per env, uniform random actions, collected by init
    hidden_sizes: tuple[int, ...] = (256, 256)  # actor and critic MLP layers
    activation: str = "relu"  # MLP activation
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the critics
    temperature_lr: float = 3e-4  # Adam learning rate of the temperature alpha
    gamma: float = 0.99  # discount factor
    tau: float = 0.005  # Polyak rate of the target critics
    init_temperature: float = 1.0  # initial temperature alpha
    auto_temperature: bool = True  # learn alpha towards target_entropy; False keeps it fixed
    target_entropy: float | None = None  # None: -action_dim
    reward_scale: float = 1.0  # rewards are multiplied by this in the critic target
    eval_episodes: int = 1  # episodes per held-out task in evaluate

    def validate(self, env: MetaEnv) -> None:
        """Raises ConfigError for impossible values or an env without a Box action space."""
        for name in ("num_tasks", "steps_per_update", "gradient_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.num_tasks:
            raise ConfigError(
                f"batch_size ({self.batch_size}) must be divisible by num_tasks ({self.num_tasks})"
            )
        if self.buffer_capacity < max(self.steps_per_update, self.warmup_steps, 1):
            raise ConfigError(
                "buffer_capacity must hold at least warmup_steps and steps_per_update"
            )
        if self.warmup_steps < 1 or self.eval_episodes < 1:
            raise ConfigError("warmup_steps and eval_episodes must be at least 1")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError("gamma must lie in [0, 1] and tau in (0, 1]")
        if min(self.actor_lr, self.critic_lr, self.temperature_lr, self.init_temperature) <= 0:
            raise ConfigError("learning rates and init_temperature must be positive")
        soft_ac.action_bounds(env)


class State(NamedTuple):
    """SAC training state: all arrays, so checkpoints hold the buffers and the env streams."""

    params: Params
    opt: OptStates
    buffer: replay.ReplayBuffer  # [envs, capacity, ...]
    env: Any  # RolloutState, leaves [envs, ...]: every env keeps running across updates
    task: EnvParams  # [envs]
    episode_return: jax.Array  # [envs] running return of the current episode
    last_return: jax.Array  # [envs] return of the last finished episode
    step: jax.Array  # updates taken


@dataclass(frozen=True)
class Setup:
    """Everything static: the env, its tasks, the soft actor-critic pieces, the config."""

    env: MetaEnv
    tasks: TaskDistribution
    ac: soft_ac.Setup
    config: Config


def act(setup: Setup, actor_params, deterministic: bool, carry, obs, first, keys):
    """The policy as a ``rollout`` policy (bind the first three arguments)."""
    del first
    x = soft_ac.flat_obs(obs, 1)
    action, extras = soft_ac.act(setup.ac, actor_params, x, keys, deterministic)
    return carry, action, extras


def random_act(setup: Setup, carry, obs, first, keys):
    """Uniform random actions in the action box (the warm-up policy)."""
    del obs, first
    uniform = lambda k: jax.random.uniform(k, (setup.ac.action_dim,), minval=-1.0, maxval=1.0)
    unit = jax.vmap(uniform)(keys)
    return carry, scale_unit_action(unit, setup.ac.low, setup.ac.high), {"unit_action": unit}


def init(setup: Setup, key: jax.Array) -> State:
    """Parameters, and the buffers filled with ``warmup_steps`` random steps per env."""
    config, env = setup.config, setup.env
    key_task, key_actor, key_critic, key_reset, key_warm = jax.random.split(key, 5)
    n = config.num_tasks
    if config.same_task:
        task = jax.tree.map(lambda x: jnp.repeat(x, n, 0), setup.tasks.sample(key_task, 1))
    else:
        task = setup.tasks.sample(key_task, n)
    obs_dim = obs_size(env)
    params, opt = soft_ac.init(setup.ac, key_actor, key_critic, obs_dim, config.init_temperature)
    # WARM-UP: uniform random actions fill the buffers (reset and run keys drawn apart)
    env_state = rollout.reset(env, task, jax.random.split(key_reset, n))
    warm_keys = jax.random.split(key_warm, n)
    policy = partial(random_act, setup)
    env_state, traj = rollout.rollout(env, policy, env_state, task, warm_keys, config.warmup_steps)
    example = replay.experience_example(obs_dim, setup.ac.action_dim)
    buffer = replay.add(replay.init(example, n, config.buffer_capacity), soft_ac.replay_items(traj))
    zeros = jnp.zeros((n,), jnp.float32)
    return State(params, opt, buffer, env_state, task, zeros, zeros, jnp.int32(0))


def track_returns(running: jax.Array, last: jax.Array, traj) -> tuple[jax.Array, jax.Array]:
    """Running and last finished episode returns ``[envs]`` after the ``[T, envs]`` rollout."""

    def track(carry, step):
        running, last = carry
        reward, done = step
        running = running + reward
        last = jnp.where(done, running, last)
        return (jnp.where(done, 0.0, running), last), None

    (running, last), _ = jax.lax.scan(track, (running, last), (traj.reward, traj.done))
    return running, last


def sample_batch(setup: Setup, buffer: replay.ReplayBuffer, key: jax.Array, axis_name):
    """A batch from every local env's buffer, flat ``[envs * N, ...]``, and noise [2, envs*N, A]."""
    config, action_dim = setup.config, setup.ac.action_dim
    n_local = distributed.local_size(config.num_tasks, axis_name)
    per_env = config.batch_size // config.num_tasks
    key_sample, key_noise = jax.random.split(key)
    keys = distributed.local_slice(jax.random.split(key_sample, config.num_tasks), axis_name)
    batch = replay.sample(buffer, keys, per_env)  # [envs, N, ...]
    noise_keys = distributed.local_slice(jax.random.split(key_noise, config.num_tasks), axis_name)
    noise = jax.vmap(lambda k: jax.random.normal(k, (2, per_env, action_dim)))(noise_keys)
    flat = jax.tree.map(lambda x: x.reshape(n_local * per_env, *x.shape[2:]), batch)
    noise = jnp.swapaxes(noise, 0, 1).reshape(2, n_local * per_env, action_dim)
    return flat, noise


def update(setup: Setup, buffer: replay.ReplayBuffer, axis_name, carry, key: jax.Array):
    """One gradient step on a fresh batch (a ``lax.scan`` body over ``(params, opt)``)."""
    params, opt = carry
    batch, noise = sample_batch(setup, buffer, key, axis_name)
    params, opt, metrics, _ = soft_ac.update(
        setup.ac, params, opt, batch, (noise[0], noise[1]), axis_name
    )
    return (params, opt), metrics


def train_step(setup: Setup, state: State, key: jax.Array, *, axis_name: str | None = None):
    """Collect ``steps_per_update`` steps per env, then ``gradient_steps`` updates."""
    config = setup.config
    key_collect, key_grad = jax.random.split(key)
    # COLLECT: every env takes steps_per_update steps with the stochastic policy
    keys = distributed.local_slice(jax.random.split(key_collect, config.num_tasks), axis_name)
    policy = partial(act, setup, state.params.actor, False)
    env_state, traj = rollout.rollout(
        setup.env, policy, state.env, state.task, keys, config.steps_per_update
    )
    buffer = replay.add(state.buffer, soft_ac.replay_items(traj))
    running, last = track_returns(state.episode_return, state.last_return, traj)
    # TRAIN: gradient_steps updates on batches drawn from every env's buffer
    (params, opt), metrics = jax.lax.scan(
        partial(update, setup, buffer, axis_name),
        (state.params, state.opt),
        jax.random.split(key_grad, config.gradient_steps),
    )
    metrics = {k: jnp.mean(v) for k, v in metrics.items()}
    metrics["last_episode_return"] = jnp.mean(last)
    metrics["reward_mean"] = jnp.mean(traj.reward)
    metrics = distributed.pmean(metrics, axis_name)
    new_state = State(params, opt, buffer, env_state, state.task, running, last, state.step + 1)
    return new_state, metrics


def evaluate(setup: Setup, state: State, key: jax.Array, eval_tasks: EnvParams) -> jax.Array:
    """Return of ``eval_episodes`` deterministic episodes on each task: ``[num_tasks, K]``."""
    episodes = setup.config.eval_episodes
    policy = partial(act, setup, state.params.actor, True)
    steps = episodes * setup.env.horizon
    _, traj = rollout.run_from_key(setup.env, policy, eval_tasks, key, steps)
    return rollout.episode_returns(traj, episodes)


def state_partition(state: State, axis_name: str) -> State:
    """Per-env leaves (buffers, env streams, tasks, returns) sharded; the rest replicated."""
    return soft_ac.state_partition(state, axis_name)


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """Single-task SAC on ``env``: init, train_step, evaluate."""
    config.validate(env)
    setup = Setup(env, tasks, soft_ac.make_setup(config, env), config)
    return Learner(
        name="sac",
        init=partial(init, setup),
        evaluate=partial(evaluate, setup),
        adaptation_unit="episode",
        env_steps_per_update=config.num_tasks * config.steps_per_update,
        make_train_step=lambda axis_name: partial(train_step, setup, axis_name=axis_name),
        return_metric="last_episode_return",
        state_partition=state_partition,
    )
