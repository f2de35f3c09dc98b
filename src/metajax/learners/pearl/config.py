"""PEARL's configuration, its checks, the static ``Setup`` and the state pytrees.

``Setup`` lives here (not in ``learner``) so ``collection`` and ``learner`` both import it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax import replay
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution, obs_size
from metajax.errors import ConfigError
from metajax.learners import soft_ac
from metajax.learners.pearl.latent import ContextEncoder, context_size

# the env ``step`` info key of a dense reward for the RL losses (``Config.rl_reward = "dense"``)
DENSE_REWARD_KEY = "dense_reward"
RL_REWARDS = ("env", "dense")
_POSITIVE = (
    "num_tasks",
    "pool_size",
    "latent_size",
    "batch_size",
    "context_batch_size",
    "gradient_steps",
    "collect_tasks",
    "initial_steps",
    "prior_steps",
    "rl_capacity",
    "eval_episodes",
)
_WHOLE_EPISODES = ("initial_steps", "prior_steps", "posterior_steps", "posterior_context_steps")


@dataclass(frozen=True)
class Config:
    """PEARL hyperparameters; the defaults are sized for a CPU (they learn the dense point
    robot in ~100 iterations, see tests/metajax/learners/test_pearl.py).

    The reference values (Rakelly et al. 2019, locomotion): hidden_sizes (300, 300, 300),
    encoder_hidden_sizes (200, 200, 200), latent 5, kl_weight 0.1, reward_scale 5, gamma 0.99,
    num_tasks 16, batch_size 256, context_batch_size 100, gradient_steps 2000, collect_tasks 5,
    prior_steps 400, posterior_steps 400 (600 in some configs), initial_steps 2000, learning
    rates 3e-4, fixed temperature 1 (see benchmarks/configs/pearl_cheetah_vel.toml).
    """

    num_tasks: int = 8  # meta-batch: tasks per gradient step (sharded over devices)
    pool_size: int = 100  # training pool when the task distribution has no fixed pool
    latent_size: int = 5  # dimension of the task latent z
    hidden_sizes: tuple[int, ...] = (64, 64)  # actor and critic MLP layers
    encoder_hidden_sizes: tuple[int, ...] = (32, 32)  # context encoder MLP layers
    activation: str = "relu"  # MLP activation
    context_next_obs: bool = True  # the encoder sees s' (the reference's use_next_obs_in_context)
    kl_weight: float = 0.01  # on the meta-batch sum of KL(q(z|c) || N(0, I)); reference 0.1
    reward_scale: float = 5.0  # rewards are multiplied by this in the critic target
    gamma: float = 0.99  # discount factor
    tau: float = 0.005  # Polyak rate of the target critics
    actor_lr: float = 1e-3  # Adam learning rate of the actor
    critic_lr: float = 1e-3  # Adam learning rate of the critics
    encoder_lr: float = 1e-3  # Adam learning rate of the context encoder
    temperature_lr: float = 1e-3  # Adam learning rate of the temperature alpha
    init_temperature: float = 1.0  # initial temperature alpha
    auto_temperature: bool = True  # learn alpha; the reference keeps it fixed at 1
    target_entropy: float | None = None  # None: -action_dim
    batch_size: int = 64  # RL transitions per task per gradient step
    context_batch_size: int = 64  # context transitions per task per gradient step
    gradient_steps: int = 100  # per train_step (one iteration)
    collect_tasks: int = 4  # tasks collected on per iteration
    initial_steps: int = 200  # per pool task, prior z, at init
    prior_steps: int = 100  # per collected task and iteration, z ~ N(0, I)
    posterior_steps: int = 100  # per collected task and iteration, z ~ q(z | c), RL buffer only
    # per collected task and iteration, after the prior steps: z ~ q(z | c) with c drawn from
    # the context buffer before each episode, into the RL and the context buffers (the
    # reference's num_steps_posterior; posterior_steps is its num_extra_rl_steps_posterior)
    posterior_context_steps: int = 0
    rl_capacity: int = 20_000  # RL buffer size per task
    eval_episodes: int = 3  # K: episodes per held-out task in ``evaluate``
    # reward of the RL buffer (actor and critic losses): "env", the env's reward, or "dense",
    # the env's info["dense_reward"] (the reference's sparse point robot: SAC on the dense
    # reward, the context encoder and the reported returns on the env's sparse one)
    rl_reward: str = "env"

    def validate(self, env: MetaEnv) -> None:
        """Raises ConfigError for impossible values (steps must be whole episodes of ``env``)
        or an env without a Box action space."""
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.posterior_context_steps < 0 or self.posterior_steps < 0:
            raise ConfigError("posterior_steps and posterior_context_steps must be non-negative")
        horizon = env.horizon
        for name in _WHOLE_EPISODES:
            if getattr(self, name) % horizon:
                raise ConfigError(
                    f"{name} ({getattr(self, name)}) must be a multiple of the horizon {horizon}"
                )
        if self.rl_capacity < self.initial_steps:
            raise ConfigError(f"rl_capacity ({self.rl_capacity}) must hold the initial_steps")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ConfigError("gamma must lie in [0, 1] and tau in (0, 1]")
        if min(self.actor_lr, self.critic_lr, self.encoder_lr, self.temperature_lr) <= 0:
            raise ConfigError("learning rates must be positive")
        if self.init_temperature <= 0 or self.kl_weight < 0:
            raise ConfigError("init_temperature must be positive and kl_weight non-negative")
        if self.rl_reward not in RL_REWARDS:
            raise ConfigError(f"rl_reward must be one of {RL_REWARDS}, got {self.rl_reward!r}")
        soft_ac.action_bounds(env)


class Params(NamedTuple):
    """PEARL's parameters."""

    actor: Any  # pi(a | s, z)
    critic: Any  # Q_1,2(s, z, a)
    target_critic: Any
    encoder: Any  # q(z | c) factors
    log_alpha: jax.Array  # scalar


class OptStates(NamedTuple):
    """One Adam state per parameter group."""

    actor: optax.OptState
    critic: optax.OptState
    encoder: optax.OptState
    alpha: optax.OptState


class State(NamedTuple):
    """PEARL training state; every leaf is an array, so a checkpoint holds the buffers."""

    params: Params
    opt: OptStates
    rl_buffer: replay.ReplayBuffer  # [pool, rl_capacity, ...]
    context_buffer: replay.ReplayBuffer  # [pool, context capacity, ...]
    pool: EnvParams  # [pool] the fixed training tasks, indexed like the buffers
    step: jax.Array  # iterations taken


@dataclass(frozen=True)
class Setup:
    """Everything static: env, tasks, the soft actor-critic pieces, the encoder, the config."""

    env: MetaEnv
    tasks: TaskDistribution
    ac: soft_ac.Setup
    encoder: ContextEncoder
    encoder_opt: optax.GradientTransformation
    pool_size: int  # training tasks, indexed like the buffers
    config: Config

    @property
    def obs_dim(self) -> int:
        """Width of a flattened observation."""
        return obs_size(self.env)

    @property
    def context_dim(self) -> int:
        """Width of one context transition as the encoder sees it."""
        return context_size(self.obs_dim, self.ac.action_dim, self.config.context_next_obs)

    @property
    def context_capacity(self) -> int:
        """Context buffer size per task: the most one collection (or init) writes."""
        config = self.config
        return max(config.initial_steps, config.prior_steps + config.posterior_context_steps)


def check_dense_reward(env: MetaEnv, tasks: TaskDistribution) -> None:
    """ConfigError unless ``env.step``'s info holds a scalar ``DENSE_REWARD_KEY`` per step.

    Traced abstractly (``jax.eval_shape``): nothing runs.
    """

    def info_of_one_step(key: jax.Array):
        task = tasks.sample_task(key)
        _, state = env.reset(key, task)
        action = jnp.zeros(env.action_space().shape, jnp.float32)
        return env.step(key, state, action, task)[-1]

    info = jax.eval_shape(info_of_one_step, jax.random.key(0))
    entry = info.get(DENSE_REWARD_KEY) if isinstance(info, dict) else None
    if entry is None or getattr(entry, "shape", None) != ():
        keys = sorted(info) if isinstance(info, dict) else []
        raise ConfigError(
            f"rl_reward='dense' needs a scalar info['{DENSE_REWARD_KEY}'] from the env's step; "
            f"{type(env).__name__} reports {keys}"
        )


def make_setup(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Setup:
    """The static pieces; ConfigError when the tasks do not fit the config."""
    if config.rl_reward == "dense":
        check_dense_reward(env, tasks)
    pool_size = tasks.num_train_tasks if tasks.num_train_tasks is not None else config.pool_size
    if config.collect_tasks > pool_size:
        raise ConfigError(
            f"collect_tasks ({config.collect_tasks}) exceeds the training pool ({pool_size})"
        )
    encoder = ContextEncoder(config.latent_size, config.encoder_hidden_sizes, config.activation)
    return Setup(
        env=env,
        tasks=tasks,
        ac=soft_ac.make_setup(config, env),
        encoder=encoder,
        encoder_opt=optax.adam(config.encoder_lr),
        pool_size=pool_size,
        config=config,
    )
