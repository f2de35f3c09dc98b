"""Soft actor-critic (Haarnoja et al. 2018): twin Q, Polyak targets, tanh-Gaussian policy.

The building blocks (networks, the tanh-Gaussian sampler with its log-prob correction, the
losses, Polyak averaging) are shared with PEARL, which conditions actor and critics on a task
latent. The learner here is plain single-task SAC: ``num_tasks`` parallel envs, each with its
own circular replay buffer (so the buffers shard over devices like PEARL's), all on one task
(``same_task=True``) or each on a task drawn once at init. One ``train_step`` collects
``steps_per_update`` steps per env and then takes ``gradient_steps`` gradient steps in a scan.

Actions live in [-1, 1] for the networks and the buffers; the env receives them scaled to its
Box bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from gymnax.environments import spaces

from metajax import distributed, replay, rollout
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution
from metajax.errors import ConfigError
from metajax.learners.base import Learner
from metajax.networks import MLP

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

# ----------------------------------------------------------------------------- networks


class TanhGaussianActor(nn.Module):
    """Mean and log-std of the pre-tanh Gaussian policy; log-std clipped to [-20, 2]."""

    action_dim: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden_sizes, activation=self.activation)(x)
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(h)
        log_std = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(h)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class TwinCritic(nn.Module):
    """Two independent Q networks on (input, action): ``q [2, ...]``."""

    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, action: jax.Array) -> jax.Array:
        xa = jnp.concatenate([x, action], axis=-1)
        qs = [
            MLP(self.hidden_sizes, output_size=1, activation=self.activation)(xa)[..., 0]
            for _ in range(2)
        ]
        return jnp.stack(qs)


# ----------------------------------------------------------------------------- distributions


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, pre_tanh: jax.Array) -> jax.Array:
    """log pi(tanh(u)) for u ~ N(mean, std): Gaussian log-density minus sum log(1 - tanh(u)^2).

    ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2 u))``, which stays finite for large |u|.
    """
    z = (pre_tanh - mean) / jnp.exp(log_std)
    gaussian = jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)
    correction = jnp.sum(
        2.0 * (jnp.log(2.0) - pre_tanh - jax.nn.softplus(-2.0 * pre_tanh)), axis=-1
    )
    return gaussian - correction


def sample_tanh_gaussian(
    noise: jax.Array, mean: jax.Array, log_std: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Reparameterized ``(tanh(mean + std * noise), log-prob)`` from standard normal ``noise``."""
    pre_tanh = mean + jnp.exp(log_std) * noise
    return jnp.tanh(pre_tanh), tanh_gaussian_log_prob(mean, log_std, pre_tanh)


# ----------------------------------------------------------------------------- losses


def soft_q_target(
    reward: jax.Array,
    terminated: jax.Array,
    next_q: jax.Array,
    next_log_prob: jax.Array,
    alpha: jax.Array,
    gamma: float,
    reward_scale: float,
) -> jax.Array:
    """``scale * r + gamma * (1 - terminated) * (min_i Q'_i(s', a') - alpha * log pi(a'|s'))``.

    ``next_q`` is ``[2, ...]`` from the target critics; the result carries no gradient.
    """
    soft_value = jnp.min(next_q, axis=0) - alpha * next_log_prob
    target = reward_scale * reward + gamma * (1.0 - terminated) * soft_value
    return jax.lax.stop_gradient(target)


def critic_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """Sum over the two critics of the mean squared error to the target: q [2, ...]."""
    return jnp.sum(jnp.mean((q - target[None]) ** 2, axis=tuple(range(1, q.ndim))))


def actor_loss(log_prob: jax.Array, q: jax.Array, alpha: jax.Array) -> jax.Array:
    """``mean(alpha * log pi(a|s) - min_i Q_i(s, a))`` for fresh actions a ~ pi; q [2, ...]."""
    return jnp.mean(jax.lax.stop_gradient(alpha) * log_prob - jnp.min(q, axis=0))


def temperature_loss(log_alpha: jax.Array, log_prob: jax.Array, target_entropy: float) -> jax.Array:
    """``-log_alpha * mean(log pi + target_entropy)``: alpha grows while entropy is too low."""
    return -log_alpha * jnp.mean(jax.lax.stop_gradient(log_prob) + target_entropy)


def polyak(target: Any, online: Any, tau: float) -> Any:
    """``target <- (1 - tau) * target + tau * online``, leaf by leaf."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


# ----------------------------------------------------------------------------- helpers


def action_bounds(env: MetaEnv) -> tuple[jax.Array, jax.Array]:
    """Low and high of the env's Box action space; ConfigError for other spaces."""
    space = env.action_space()
    if not isinstance(space, spaces.Box):
        raise ConfigError(f"SAC and PEARL need a continuous (Box) action space, got {space}")
    shape = space.shape
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), shape)
    return low, high


def scale_action(unit_action: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """Maps an action in [-1, 1] to the Box [low, high]."""
    return low + 0.5 * (unit_action + 1.0) * (high - low)


def flat_obs(obs: jax.Array, batch_dims: int) -> jax.Array:
    """Observations flattened after the ``batch_dims`` leading axes, as float32."""
    return jnp.reshape(obs, obs.shape[:batch_dims] + (-1,)).astype(jnp.float32)


def to_experience(traj) -> replay.Experience:
    """Replay items from a ``[T, B]`` rollout whose policy stored ``extras["unit_action"]``."""
    return replay.Experience(
        obs=flat_obs(traj.obs, 2),
        action=traj.extras["unit_action"],
        reward=traj.reward,
        next_obs=flat_obs(traj.next_obs, 2),
        terminated=traj.terminated.astype(jnp.float32),
    )


def time_to_items(tree):
    """``[T, B, ...]`` rollout leaves -> ``[B, T, ...]`` buffer items (task axis first)."""
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tree)


def normal_per_env(keys: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal noise ``[B, *shape]``, one key per env."""
    return jax.vmap(lambda k: jax.random.normal(k, shape))(keys)


# ----------------------------------------------------------------------------- learner


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
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    init_temperature: float = 1.0
    auto_temperature: bool = True  # learn alpha towards target_entropy; False keeps it fixed
    target_entropy: float | None = None  # None: -action_dim
    reward_scale: float = 1.0
    eval_episodes: int = 1

    def validate(self) -> None:
        """Raises ConfigError for impossible values."""
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


class Params(NamedTuple):
    """SAC's parameters."""

    actor: Any
    critic: Any
    target_critic: Any
    log_alpha: jax.Array  # scalar


class OptStates(NamedTuple):
    """One Adam state per parameter group."""

    actor: optax.OptState
    critic: optax.OptState
    alpha: optax.OptState


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


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """Single-task SAC on ``env``: init, train_step, evaluate."""
    config.validate()
    low, high = action_bounds(env)
    action_dim = low.shape[0] if low.ndim else 1
    obs_dim = int(jnp.size(jnp.zeros(env.observation_space().shape)))
    actor = TanhGaussianActor(action_dim, config.hidden_sizes, config.activation)
    critic = TwinCritic(config.hidden_sizes, config.activation)
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)
    alpha_opt = optax.adam(config.temperature_lr)
    target_entropy = -float(action_dim) if config.target_entropy is None else config.target_entropy
    per_env_batch = config.batch_size // config.num_tasks
    example = replay.Experience(
        obs=jnp.zeros((obs_dim,)),
        action=jnp.zeros((action_dim,)),
        reward=jnp.zeros(()),
        next_obs=jnp.zeros((obs_dim,)),
        terminated=jnp.zeros(()),
    )

    def policy_fn(params, deterministic: bool) -> rollout.Policy:
        def policy(carry, obs, first, keys):
            del first
            mean, log_std = actor.apply(params, flat_obs(obs, 1))
            if deterministic:
                unit = jnp.tanh(mean)
            else:
                noise = normal_per_env(keys, (action_dim,))
                unit, _ = sample_tanh_gaussian(noise, mean, log_std)
            return carry, scale_action(unit, low, high), {"unit_action": unit}

        return policy

    def random_policy(carry, obs, first, keys):
        uniform = lambda k: jax.random.uniform(k, (action_dim,), minval=-1.0, maxval=1.0)
        unit = jax.vmap(uniform)(keys)
        return carry, scale_action(unit, low, high), {"unit_action": unit}

    def init(key: jax.Array) -> State:
        key_task, key_actor, key_critic, key_reset, key_warm = jax.random.split(key, 5)
        n = config.num_tasks
        if config.same_task:
            task = jax.tree.map(lambda x: jnp.repeat(x, n, 0), tasks.sample(key_task, 1))
        else:
            task = tasks.sample(key_task, n)
        actor_params = actor.init(key_actor, jnp.zeros((1, obs_dim)))
        critic_params = critic.init(key_critic, jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)))
        log_alpha = jnp.log(jnp.float32(config.init_temperature))
        params = Params(actor_params, critic_params, critic_params, log_alpha)
        opt = OptStates(
            actor_opt.init(actor_params), critic_opt.init(critic_params), alpha_opt.init(log_alpha)
        )
        env_state = rollout.reset(env, task, jax.random.split(key_reset, n))
        # WARM-UP: uniform random actions fill the buffers
        env_state, traj = rollout.rollout(
            env, random_policy, env_state, task, jax.random.split(key_warm, n), config.warmup_steps
        )
        items = time_to_items(to_experience(traj))
        buffer = replay.add(replay.init(example, n, config.buffer_capacity), items)
        zeros = jnp.zeros((n,), jnp.float32)
        return State(params, opt, buffer, env_state, task, zeros, zeros, jnp.int32(0))

    def gradient_step(params: Params, opt: OptStates, batch, noise, axis_name):
        """One SAC update from a batch (leaves [N, ...]) and standard normal noise [2, N, A]."""
        alpha = jnp.exp(params.log_alpha)

        def critic_objective(critic_params):
            mean, log_std = actor.apply(params.actor, batch.next_obs)
            next_action, next_log_prob = sample_tanh_gaussian(noise[0], mean, log_std)
            next_q = critic.apply(params.target_critic, batch.next_obs, next_action)
            target = soft_q_target(
                batch.reward,
                batch.terminated,
                next_q,
                next_log_prob,
                alpha,
                config.gamma,
                config.reward_scale,
            )
            q = critic.apply(critic_params, batch.obs, batch.action)
            return critic_loss(q, target), jnp.mean(q)

        (c_loss, q_mean), grads = jax.value_and_grad(critic_objective, has_aux=True)(params.critic)
        grads = distributed.pmean(grads, axis_name)
        updates, critic_state = critic_opt.update(grads, opt.critic, params.critic)
        critic_params = optax.apply_updates(params.critic, updates)

        def actor_objective(actor_params):
            mean, log_std = actor.apply(actor_params, batch.obs)
            action, log_prob = sample_tanh_gaussian(noise[1], mean, log_std)
            q = critic.apply(critic_params, batch.obs, action)
            return actor_loss(log_prob, q, alpha), log_prob

        (a_loss, log_prob), grads = jax.value_and_grad(actor_objective, has_aux=True)(params.actor)
        grads = distributed.pmean(grads, axis_name)
        updates, actor_state = actor_opt.update(grads, opt.actor, params.actor)
        actor_params = optax.apply_updates(params.actor, updates)

        log_alpha, alpha_state = params.log_alpha, opt.alpha
        if config.auto_temperature:
            grad = jax.grad(temperature_loss)(params.log_alpha, log_prob, target_entropy)
            grad = distributed.pmean(grad, axis_name)
            updates, alpha_state = alpha_opt.update(grad, opt.alpha, params.log_alpha)
            log_alpha = optax.apply_updates(params.log_alpha, updates)

        target = polyak(params.target_critic, critic_params, config.tau)
        new_params = Params(actor_params, critic_params, target, log_alpha)
        metrics = {
            "critic_loss": c_loss,
            "actor_loss": a_loss,
            "q_mean": q_mean,
            "entropy": -jnp.mean(log_prob),
            "alpha": alpha,
        }
        return new_params, OptStates(actor_state, critic_state, alpha_state), metrics

    def make_train_step(axis_name: str | None):
        def train_step(state: State, key: jax.Array):
            key_collect, key_grad = jax.random.split(key)
            n_local = distributed.local_size(config.num_tasks, axis_name)
            # COLLECT: every env takes steps_per_update steps with the stochastic policy
            keys = distributed.local_slice(
                jax.random.split(key_collect, config.num_tasks), axis_name
            )
            policy = policy_fn(state.params.actor, deterministic=False)
            env_state, traj = rollout.rollout(
                env, policy, state.env, state.task, keys, config.steps_per_update
            )
            items = time_to_items(to_experience(traj))
            buffer = replay.add(state.buffer, items)

            def track(carry, step):
                running, last = carry
                reward, done = step
                running = running + reward
                last = jnp.where(done, running, last)
                return (jnp.where(done, 0.0, running), last), None

            rewards, dones = traj.reward, traj.done  # [T, envs]
            (running, last), _ = jax.lax.scan(
                track, (state.episode_return, state.last_return), (rewards, dones)
            )

            # TRAIN: gradient_steps updates on batches drawn from every env's buffer
            def update(carry, key):
                params, opt = carry
                key_sample, key_noise = jax.random.split(key)
                keys = distributed.local_slice(
                    jax.random.split(key_sample, config.num_tasks), axis_name
                )
                batch = replay.sample(buffer, keys, per_env_batch)  # [envs, N, ...]
                noise_keys = distributed.local_slice(
                    jax.random.split(key_noise, config.num_tasks), axis_name
                )
                noise = jax.vmap(lambda k: jax.random.normal(k, (2, per_env_batch, action_dim)))(
                    noise_keys
                )  # [envs, 2, N, A]
                flat = jax.tree.map(
                    lambda x: x.reshape(n_local * per_env_batch, *x.shape[2:]), batch
                )
                noise = jnp.swapaxes(noise, 0, 1).reshape(2, n_local * per_env_batch, action_dim)
                params, opt, metrics = gradient_step(params, opt, flat, noise, axis_name)
                return (params, opt), metrics

            (params, opt), metrics = jax.lax.scan(
                update,
                (state.params, state.opt),
                jax.random.split(key_grad, config.gradient_steps),
            )
            metrics = {k: jnp.mean(v) for k, v in metrics.items()}
            metrics["last_episode_return"] = jnp.mean(last)
            metrics["reward_mean"] = jnp.mean(traj.reward)
            metrics = distributed.pmean(metrics, axis_name)
            new_state = State(
                params, opt, buffer, env_state, state.task, running, last, state.step + 1
            )
            return new_state, metrics

        return train_step

    def evaluate(state: State, key: jax.Array, eval_tasks: EnvParams) -> jax.Array:
        """Return of ``eval_episodes`` deterministic episodes on each task: ``[num_tasks, K]``."""
        n = jax.tree.leaves(eval_tasks)[0].shape[0]
        policy = policy_fn(state.params.actor, deterministic=True)
        steps = config.eval_episodes * env.horizon

        key_reset, key_run = jax.random.split(key)
        start = rollout.reset(env, eval_tasks, jax.random.split(key_reset, n))
        _, traj = rollout.rollout(
            env, policy, start, eval_tasks, jax.random.split(key_run, n), steps
        )
        return rollout.episode_returns(traj, config.eval_episodes)

    def state_partition(state: State, axis_name: str):
        """Per-env leaves (buffers, env streams, tasks, returns) sharded; the rest replicated."""
        shard = lambda tree: distributed.partition_like(tree, axis_name)
        replicate = distributed.partition_like
        return State(
            params=replicate(state.params),
            opt=replicate(state.opt),
            buffer=shard(state.buffer),
            env=shard(state.env),
            task=shard(state.task),
            episode_return=jax.P(axis_name),
            last_return=jax.P(axis_name),
            step=jax.P(),
        )

    return Learner(
        name="sac",
        init=init,
        evaluate=evaluate,
        adaptation_unit="episode",
        env_steps_per_update=config.num_tasks * config.steps_per_update,
        make_train_step=make_train_step,
        return_metric="last_episode_return",
        state_partition=state_partition,
    )
