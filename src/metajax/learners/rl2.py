"""RL² (Duan et al. 2016): a recurrent policy whose memory spans the K episodes of a trial.

The task is drawn once per trial; the env is wrapped in ``TrialWrapper`` so the network sees
the previous action, reward and episode-done flag, and its memory is reset only between
trials. The outer loop is PPO with GAE over the whole trial (the discount runs across the
episode boundaries inside a trial). The memory is any core of ``metajax.cores`` (``core``
and the ``core_*`` options): acting runs its step mode, the PPO loss its sequence mode over whole
trials (no truncation inside a trial); both compute the same function. Every update collects
exactly one trial per task in ``[T = K * horizon, tasks]`` steps; steps after a trial ends early
are masked out.

The learner is module-level functions of a frozen ``Setup``; ``make_learner`` binds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax import distributed, networks, rollout
from metajax.cores import CoreConfig
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution, flat_action_dim, is_discrete
from metajax.envs.wrappers import TrialWrapper, unit_box_actions
from metajax.errors import ConfigError
from metajax.learners import representation, trial_ppo
from metajax.learners.base import Learner, Metrics
from metajax.types import Transition


@dataclass(frozen=True)
class Config:
    """RL² hyperparameters. Shapes (tasks, sizes, epochs) are static; the rest are numbers."""

    num_tasks: int = 512  # trials per update, one task each (sharded over devices)
    episodes_per_trial: int = 10  # K; for bandits each pull is an episode, so K = n pulls
    core: str = "gru"  # memory core: gru | lstm | transformer | lru | memory
    core_size: int = 128  # width of the memory core (hidden units, model width, LRU state)
    core_layers: int = 1  # transformer blocks / stacked LRU blocks
    core_heads: int = 4  # transformer attention heads (must divide core_size)
    core_window: int | None = None  # transformer: attend to the last steps (None: whole trial)
    core_max_len: int = 512  # transformer: longest trial without a window
    core_gate: bool = False  # transformer: GTrXL gates instead of residual sums
    core_slots: int = 16  # memory: number of slots
    core_slot_size: int = 32  # memory: width of a slot
    core_parallel: bool | None = None  # lru: associative scan (None: on accelerators only)
    hidden_sizes: tuple[int, ...] = (128,)  # MLP layers before the memory core
    head_sizes: tuple[int, ...] = ()  # MLP over [core output, embedding] before the heads
    activation: str = "tanh"  # MLP activation, e.g. tanh | relu
    learning_rate: float = 1e-3  # Adam learning rate
    lr_decay_updates: int = 0  # learning rate falls linearly to 0 over this many updates (0: off)
    gamma: float = 0.99  # discount factor
    gae_lambda: float = 0.95  # GAE lambda
    clip_eps: float = 0.2  # PPO clipping of the likelihood ratio
    clip_value: bool = True  # clip the value loss too (by clip_eps, in reward units)
    update_epochs: int = 4  # PPO epochs over each batch of trials
    num_minibatches: int = 4  # PPO minibatches per epoch (num_tasks must divide by it)
    ent_coef: float = 0.01  # entropy bonus coefficient
    vf_coef: float = 0.5  # value loss coefficient
    max_grad_norm: float = 0.5  # clip of the global gradient norm
    reward_scale: float = 1.0  # rewards are multiplied by this for the losses (not the metrics)
    unit_actions: bool = True  # Box actions: the policy acts in [-1, 1], scaled to the env's box
    time_inputs: bool = False  # inputs also get the fractions of trial, episodes and episode done
    transition_inputs: bool = False  # inputs also get the observation the last action was taken in

    def validate(self, env: MetaEnv) -> None:
        """Raises ConfigError for impossible sizes (RL²'s checks do not need ``env``)."""
        positive = ("num_tasks", "episodes_per_trial", "core_size", "update_epochs")
        if self.lr_decay_updates < 0:
            raise ConfigError(
                f"lr_decay_updates must be 0 (constant) or more, got {self.lr_decay_updates}"
            )
        for name in positive + ("num_minibatches",):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.num_tasks % self.num_minibatches:
            raise ConfigError(
                f"num_tasks ({self.num_tasks}) must be divisible by num_minibatches "
                f"({self.num_minibatches})"
            )
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError("gamma and gae_lambda must lie in [0, 1]")
        self.core_config().validate(self.episodes_per_trial * env.horizon)
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")

    def core_config(self, trial_length: int | None = None) -> CoreConfig:
        """The memory core's options; a trial length caps the transformer's cache at it.

        The LRU's associative scan pays off on accelerators; on CPU the sequential scan was
        never slower and up to 2.4x faster (benchmarks/results/core_throughput_cpu*.md).
        """
        window, max_len = self.core_window, self.core_max_len
        parallel = self.core_parallel
        if parallel is None:
            parallel = jax.default_backend() != "cpu"
        if trial_length is not None:  # a cache longer than the trial computes the same
            max_len = min(max_len, trial_length)
            window = None if window is None else min(window, trial_length)
        return CoreConfig(
            name=self.core,
            size=self.core_size,
            layers=self.core_layers,
            heads=self.core_heads,
            window=window,
            max_len=max_len,
            gate=self.core_gate,
            slots=self.core_slots,
            slot_size=self.core_slot_size,
            parallel=parallel,
        )


class State(NamedTuple):
    """RL² training state: network parameters and optimizer state."""

    params: dict
    opt_state: optax.OptState


@dataclass(frozen=True)
class Setup:
    """What RL² builds once: the trial env, tasks, network, optimizer and config (static)."""

    env: TrialWrapper
    tasks: TaskDistribution
    network: networks.RecurrentActorCritic
    optimizer: optax.GradientTransformation
    config: Config


Minibatch = trial_ppo.Trials  # whole trials [T, B, ...] for the PPO loss


def make_network(config: Config, env: TrialWrapper) -> networks.RecurrentActorCritic:
    """The recurrent actor-critic for ``env``'s action space."""
    action_space = env.action_space()
    return networks.RecurrentActorCritic(
        action_dim=flat_action_dim(action_space),
        discrete=is_discrete(action_space),
        core=config.core_config(env.horizon),
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
        head_sizes=config.head_sizes,
    )


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Adam with global-norm gradient clipping; with ``lr_decay_updates`` its rate falls
    linearly to 0 over that many updates (each ``update_epochs * num_minibatches`` steps)."""
    learning_rate = config.learning_rate
    if config.lr_decay_updates:
        steps = config.lr_decay_updates * config.update_epochs * config.num_minibatches
        learning_rate = optax.linear_schedule(config.learning_rate, 0.0, steps)
    return trial_ppo.clipped_adam(learning_rate, config.max_grad_norm)


def fresh_carry(setup: Setup, batch: int) -> Any:
    """The memory core's zero carry for ``batch`` trials."""
    return networks.initial_carry(setup.network.core, batch)


def init(setup: Setup, key: jax.Array) -> State:
    """Fresh network parameters and optimizer state."""
    obs = jnp.zeros((1, *setup.env.observation_space().shape), jnp.float32)
    params = setup.network.init(key, fresh_carry(setup, 1), obs, jnp.ones((1,), bool))
    return State(params, setup.optimizer.init(params))


def policy_step(setup: Setup, params, carry, obs: jax.Array, first: jax.Array, keys: jax.Array):
    """One acting step on [B] trials: memory reset where ``first``, then sample an action."""
    network = setup.network
    carry, (dist, value) = network.apply(params, carry, obs, first)  # step mode
    action = jax.vmap(lambda k, d: networks.sample_action(k, d, network.discrete))(keys, dist)
    log_prob = networks.log_prob(dist, action, network.discrete)
    return carry, action, {"log_prob": log_prob, "value": value}


def make_policy(setup: Setup, params) -> rollout.Policy:
    """RL²'s acting function for ``rollout``: memory reset where a new trial starts."""
    return partial(policy_step, setup, params)


trial_mask = trial_ppo.trial_mask


def run_trials(
    setup: Setup, params, tasks: EnvParams, keys: jax.Array
) -> tuple[Transition, jax.Array]:
    """One trial per task [B] from fresh memory; returns ``[T, B]`` transitions and the mask."""
    carry = fresh_carry(setup, keys.shape[0])
    policy = make_policy(setup, params)
    _, transitions = rollout.run(setup.env, policy, tasks, keys, setup.env.horizon, carry)
    return transitions, trial_mask(transitions.done)


def episode_returns_in_trial(transitions: Transition, mask: jax.Array, episodes: int):
    """Return of episode k = 1..K of each trial: ``[B, K]``."""
    index = transitions.info["episode_index"]  # [T, B]
    one_hot = jax.nn.one_hot(index, episodes, dtype=jnp.float32) * mask[..., None]
    return jnp.einsum("tb,tbk->bk", transitions.reward, one_hot)


def sequence_outputs(setup: Setup, params, obs: jax.Array, first: jax.Array):
    """Re-runs the network over whole trials [T, B] from fresh memory: ``(dist, value)``."""
    return networks.unroll(setup.network, params, obs, first)


def loss(setup: Setup, params, minibatch: Minibatch) -> tuple[jax.Array, Metrics]:
    """PPO's clipped loss over whole trials [T, B]; returns ``(loss, info)``."""
    dist, value = sequence_outputs(setup, params, minibatch.obs, minibatch.first)
    return trial_ppo.clipped_loss(dist, value, setup.network.discrete, minibatch, setup.config)


def trial_data(setup: Setup, traj: Transition, mask: jax.Array, axis_name: str | None) -> Minibatch:
    """GAE over the whole trial (its end is the only true episode end), standardized."""
    return trial_ppo.trials(traj, mask, setup.config, axis_name)


def update(setup: Setup, state: State, data: Minibatch, key: jax.Array, axis_name: str | None):
    """PPO epochs over minibatches; returns the new state and the mean loss info."""
    params, opt_state, info = trial_ppo.epochs(
        partial(loss, setup), setup.optimizer, *state, data, key, setup.config, axis_name
    )
    return State(params, opt_state), info


def train_step(
    setup: Setup, state: State, key: jax.Array, *, axis_name: str | None = None
) -> tuple[State, Metrics]:
    """One update: a trial on each of this shard's tasks, then PPO epochs over them."""
    config = setup.config
    key_tasks, key_envs, key_epochs = jax.random.split(key, 3)
    # COLLECT TRIALS: the global batch is drawn, each shard keeps its slice
    tasks, keys = distributed.local_task_draw(
        setup.tasks, key_tasks, key_envs, config.num_tasks, axis_name
    )
    trial_ppo.check_minibatches(config.num_tasks, config.num_minibatches, axis_name)
    traj, mask = run_trials(setup, state.params, tasks, keys)
    # ADVANTAGES, then PPO EPOCHS over minibatches of whole trials
    data = trial_data(setup, traj, mask, axis_name)
    state, metrics = update(setup, state, data, key_epochs, axis_name)
    trial_return = jnp.sum(traj.reward * mask, axis=0)  # [B]
    metrics["trial_return"] = distributed.pmean(jnp.mean(trial_return), axis_name)
    metrics["env_steps"] = distributed.psum(jnp.sum(mask), axis_name)
    return state, metrics


def make_train_step(setup: Setup, axis_name: str | None):
    """``train_step`` for one shard of the task axis ``axis_name`` (None: one device)."""
    return partial(train_step, setup, axis_name=axis_name)


def evaluate(setup: Setup, state: State, key: jax.Array, tasks: EnvParams) -> jax.Array:
    """Return of episode k = 1..K of one trial on each given task: ``[num_tasks, K]``."""
    n = jax.tree.leaves(tasks)[0].shape[0]
    traj, mask = run_trials(setup, state.params, tasks, jax.random.split(key, n))
    return episode_returns_in_trial(traj, mask, setup.config.episodes_per_trial)


def act(setup: Setup, state: State, carry, obs: jax.Array, first: jax.Array, keys: jax.Array):
    """One step of the trained policy on trial observations [B, ...] (memory in carry)."""
    if carry is None:
        carry = fresh_carry(setup, obs.shape[0])
    return policy_step(setup, state.params, carry, obs, first, keys)


def make_setup(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Setup:
    """The ``Setup`` of RL² on ``env`` (wrapped in a K-episode ``TrialWrapper``; with
    ``unit_actions`` a finite Box action space is presented as [-1, 1] first)."""
    inner = unit_box_actions(env) if config.unit_actions else env
    trial_env = TrialWrapper(
        inner, config.episodes_per_trial, config.time_inputs, config.transition_inputs
    )
    return Setup(trial_env, tasks, make_network(config, trial_env), make_optimizer(config), config)


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """RL² on the task distribution ``tasks`` of ``env``: init, train_step, evaluate."""
    config.validate(env)
    setup = make_setup(config, env, tasks)
    return Learner(
        name="rl2",
        init=partial(init, setup),
        make_train_step=partial(make_train_step, setup),
        evaluate=partial(evaluate, setup),
        adaptation_unit="episode",
        env_steps_per_update=config.num_tasks * setup.env.horizon,
        return_metric="trial_return",
        act=partial(act, setup),
        represent=partial(represent, setup),
    )


def memory_policy(setup: Setup, params, carry, obs: jax.Array, first: jax.Array, keys: jax.Array):
    """``policy_step`` that also returns the memory after the step, flat (and projected to at
    most ``representation.MAX_FEATURES``), in ``extras["memory"]`` [B, F]."""
    carry, action, extras = policy_step(setup, params, carry, obs, first, keys)
    memory = representation.flatten_carry(carry, fresh_carry(setup, 1))
    return carry, action, {**extras, "memory": representation.project(memory)}


def represent(setup: Setup, state: State, key: jax.Array, tasks: EnvParams):
    """RL²'s memory over one trial per task: row t is the memory after taking in observation
    t (which carries step t-1's action and reward), so it has seen steps 0..t-1."""
    n = jax.tree.leaves(tasks)[0].shape[0]
    policy = partial(memory_policy, setup, state.params)
    keys = jax.random.split(key, n)
    _, traj = rollout.run(setup.env, policy, tasks, keys, setup.env.horizon, fresh_carry(setup, n))
    mask = trial_mask(traj.done)  # [T, N]
    return representation.Representation(
        features=jnp.swapaxes(traj.extras["memory"], 0, 1),  # [N, T, F]
        valid=mask.T,
        seen=jnp.arange(mask.shape[0]),
        unit=traj.info["episode_index"].T,
        transitions=representation.strip_extras(traj),
        mask=mask,
    )
