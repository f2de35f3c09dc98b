"""The one soft actor-critic update (Haarnoja et al. 2018), shared by SAC and PEARL.

Twin Q critics with Polyak-averaged targets, a tanh-Gaussian policy with the log-det
correction, and a learned (or fixed) temperature alpha. ``update`` takes one gradient step on
all three from a batch of transitions; what differs between its users is what the networks
see: SAC gives them the observation, PEARL ``concat(obs, z)`` with z from a context encoder
that the critic loss trains (an ``embed`` function and its parameters, see ``Inputs``).

Actions live in [-1, 1] for the networks and the buffers; the env receives them scaled to its
Box bounds (``act``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from gymnax.environments import spaces

from metajax import distributed, replay
from metajax.envs.core import MetaEnv, flat_action_dim
from metajax.envs.wrappers import box_bounds, scale_unit_action
from metajax.errors import ConfigError
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


def normal_per_env(keys: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal noise ``[B, *shape]``, one key per env."""
    return jax.vmap(lambda k: jax.random.normal(k, shape))(keys)


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


# ----------------------------------------------------------------------------- actions, items


def action_bounds(env: MetaEnv) -> tuple[jax.Array, jax.Array]:
    """Low and high of the env's Box action space; ConfigError for other spaces."""
    space = env.action_space()
    if not isinstance(space, spaces.Box):
        raise ConfigError(f"SAC and PEARL need a continuous (Box) action space, got {space}")
    return box_bounds(space)


def flat_obs(obs: jax.Array, batch_dims: int) -> jax.Array:
    """Observations flattened after the ``batch_dims`` leading axes, as float32."""
    return jnp.reshape(obs, obs.shape[:batch_dims] + (-1,)).astype(jnp.float32)


def replay_items(traj) -> replay.Experience:
    """Buffer items ``[B, T, ...]`` from a ``[T, B]`` rollout of ``act`` (``unit_action``)."""
    items = replay.Experience(
        obs=flat_obs(traj.obs, 2),
        action=traj.extras["unit_action"],
        reward=traj.reward,
        next_obs=flat_obs(traj.next_obs, 2),
        terminated=traj.terminated.astype(jnp.float32),
    )
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), items)


# ----------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class Setup:
    """The static pieces of the update: networks, optimizers, the env's action box, constants."""

    actor: TanhGaussianActor
    critic: TwinCritic
    actor_opt: optax.GradientTransformation
    critic_opt: optax.GradientTransformation
    alpha_opt: optax.GradientTransformation
    low: jax.Array  # [A] action box
    high: jax.Array  # [A]
    gamma: float
    tau: float
    reward_scale: float
    target_entropy: float
    auto_temperature: bool

    @property
    def action_dim(self) -> int:
        """Width of an action."""
        return self.actor.action_dim


def make_setup(config: Any, env: MetaEnv) -> Setup:
    """The update's pieces from a config with SAC's fields (hidden_sizes, activation, the three
    learning rates, gamma, tau, reward_scale, target_entropy, auto_temperature)."""
    low, high = action_bounds(env)
    action_dim = flat_action_dim(env.action_space())
    target_entropy = config.target_entropy
    return Setup(
        actor=TanhGaussianActor(action_dim, config.hidden_sizes, config.activation),
        critic=TwinCritic(config.hidden_sizes, config.activation),
        actor_opt=optax.adam(config.actor_lr),
        critic_opt=optax.adam(config.critic_lr),
        alpha_opt=optax.adam(config.temperature_lr),
        low=low,
        high=high,
        gamma=config.gamma,
        tau=config.tau,
        reward_scale=config.reward_scale,
        target_entropy=-float(action_dim) if target_entropy is None else target_entropy,
        auto_temperature=config.auto_temperature,
    )


class Params(NamedTuple):
    """Soft actor-critic parameters (PEARL's add an encoder: any NamedTuple with these fields)."""

    actor: Any
    critic: Any
    target_critic: Any
    log_alpha: jax.Array  # scalar


class OptStates(NamedTuple):
    """One Adam state per parameter group."""

    actor: optax.OptState
    critic: optax.OptState
    alpha: optax.OptState


def init(
    ac: Setup, key_actor: jax.Array, key_critic: jax.Array, input_dim: int, temperature: float
) -> tuple[Params, OptStates]:
    """Fresh parameters for inputs of width ``input_dim`` (targets = critics) and their Adam
    states."""
    actor_params = ac.actor.init(key_actor, jnp.zeros((1, input_dim)))
    critic_params = ac.critic.init(
        key_critic, jnp.zeros((1, input_dim)), jnp.zeros((1, ac.action_dim))
    )
    log_alpha = jnp.log(jnp.float32(temperature))
    opt = OptStates(
        ac.actor_opt.init(actor_params),
        ac.critic_opt.init(critic_params),
        ac.alpha_opt.init(log_alpha),
    )
    return Params(actor_params, critic_params, critic_params, log_alpha), opt


def act(
    ac: Setup, actor_params: Any, x: jax.Array, keys: jax.Array, deterministic: bool
) -> tuple[jax.Array, dict]:
    """Env actions ``[B, A]`` for inputs ``x [B, D]`` (tanh of the mean if ``deterministic``,
    else one sample per key) and ``{"unit_action": the action in [-1, 1]}``."""
    mean, log_std = ac.actor.apply(actor_params, x)
    if deterministic:
        unit = jnp.tanh(mean)
    else:
        noise = normal_per_env(keys, (ac.action_dim,))
        unit, _ = sample_tanh_gaussian(noise, mean, log_std)
    return scale_unit_action(unit, ac.low, ac.high), {"unit_action": unit}


def state_partition(state: NamedTuple, axis_name: str, replicated=("params", "opt", "step")):
    """``jax.P`` specs for a learner state (NamedTuple) whose other fields are per env or per
    task (replay buffers, env streams, tasks): those sharded over ``axis_name``."""
    return type(state)(
        **{
            name: distributed.partition_like(value, None if name in replicated else axis_name)
            for name, value in state._asdict().items()
        }
    )


# ----------------------------------------------------------------------------- the update


class Inputs(NamedTuple):
    """What the networks see in one update (leaves ``[..., N, D]``)."""

    obs: jax.Array  # input of Q(s, a) in the critic loss; may carry a gradient into ``embed``
    next_obs: jax.Array  # input of pi(. | s') and of the target critics
    actor_obs: jax.Array  # input of the actor loss (no gradient into ``embed``)
    loss: jax.Array | None = None  # an extra loss added to the critic loss (PEARL's KL term)
    metrics: dict | None = None  # extra scalars to report


def observation_inputs(embed_params: Any, batch: replay.Experience) -> Inputs:
    """Plain SAC: every network sees the observation."""
    del embed_params
    return Inputs(batch.obs, batch.next_obs, batch.obs)


def apply_adam(opt: optax.GradientTransformation, grads, opt_state, params):
    """One optimizer step: ``(new params, new state)``."""
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def critic_objective(
    ac: Setup,
    critic_params: Any,
    embed_params: Any,
    params: Params,
    batch: replay.Experience,
    next_noise: jax.Array,
    embed: Callable[[Any, replay.Experience], Inputs],
):
    """Critic loss (plus ``embed``'s extra loss) and aux ``(inputs, critic loss, mean Q)``."""
    alpha = jnp.exp(params.log_alpha)
    inputs = embed(embed_params, batch)
    next_mean, next_log_std = ac.actor.apply(params.actor, inputs.next_obs)
    next_action, next_log_prob = sample_tanh_gaussian(next_noise, next_mean, next_log_std)
    next_q = ac.critic.apply(params.target_critic, inputs.next_obs, next_action)
    target = soft_q_target(
        batch.reward, batch.terminated, next_q, next_log_prob, alpha, ac.gamma, ac.reward_scale
    )
    q = ac.critic.apply(critic_params, inputs.obs, batch.action)
    q_loss = critic_loss(q, target)
    loss = q_loss if inputs.loss is None else q_loss + inputs.loss
    return loss, (inputs, q_loss, jnp.mean(q))


def actor_objective(
    ac: Setup, actor_params: Any, critic_params: Any, alpha: jax.Array, x: jax.Array, noise
):
    """Actor loss on fresh actions for inputs ``x``, and their log-probs."""
    mean, log_std = ac.actor.apply(actor_params, x)
    action, log_prob = sample_tanh_gaussian(noise, mean, log_std)
    q = ac.critic.apply(critic_params, x, action)
    return actor_loss(log_prob, q, alpha), log_prob


def update(
    ac: Setup,
    params: Params,
    opt: OptStates,
    batch: replay.Experience,
    noise: tuple[jax.Array, jax.Array],
    axis_name: str | None = None,
    embed: Callable[[Any, replay.Experience], Inputs] = observation_inputs,
    embed_params: Any = (),
):
    """One soft actor-critic step: critics, then actor, temperature and Polyak targets.

    ``batch`` leaves ``[..., N, ...]``; ``noise`` = (next-action, new-action) standard normal
    ``[..., N, A]``. ``params``/``opt`` are any NamedTuples with the fields of ``Params`` and
    ``OptStates``; the others are left as they are. ``embed(embed_params, batch)`` gives the
    networks' inputs; the critic loss also differentiates ``embed_params``.
    Returns ``(params, opt, metrics, embed_grads)`` (gradients averaged over shards).
    """
    alpha = jnp.exp(params.log_alpha)
    grad_fn = jax.grad(critic_objective, argnums=(1, 2), has_aux=True)
    grads, (inputs, q_loss, q_mean) = grad_fn(
        ac, params.critic, embed_params, params, batch, noise[0], embed
    )
    critic_grads, embed_grads = distributed.pmean(grads, axis_name)
    critic_params, critic_state = apply_adam(ac.critic_opt, critic_grads, opt.critic, params.critic)

    actor_fn = jax.value_and_grad(actor_objective, argnums=1, has_aux=True)
    (a_loss, log_prob), grads = actor_fn(
        ac, params.actor, critic_params, alpha, inputs.actor_obs, noise[1]
    )
    grads = distributed.pmean(grads, axis_name)
    actor_params, actor_state = apply_adam(ac.actor_opt, grads, opt.actor, params.actor)

    log_alpha, alpha_state = params.log_alpha, opt.alpha
    if ac.auto_temperature:
        grad = jax.grad(temperature_loss)(params.log_alpha, log_prob, ac.target_entropy)
        grad = distributed.pmean(grad, axis_name)
        log_alpha, alpha_state = apply_adam(ac.alpha_opt, grad, opt.alpha, params.log_alpha)

    target = optax.incremental_update(critic_params, params.target_critic, ac.tau)
    params = params._replace(
        actor=actor_params, critic=critic_params, target_critic=target, log_alpha=log_alpha
    )
    opt = opt._replace(actor=actor_state, critic=critic_state, alpha=alpha_state)
    metrics = {
        "critic_loss": q_loss,
        "actor_loss": a_loss,
        "q_mean": q_mean,
        "entropy": -jnp.mean(log_prob),
        "alpha": alpha,
        **(inputs.metrics or {}),
    }
    return params, opt, metrics, embed_grads
