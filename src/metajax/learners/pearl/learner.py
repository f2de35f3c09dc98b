"""PEARL (Rakelly et al. 2019): SAC conditioned on a task latent z inferred from context.

The context encoder maps each transition (s, a, r, s') to a Gaussian factor; the posterior
q(z | c) is their product (permutation invariant, and incremental: the natural parameters of a
product are sums, see ``GaussianStats``). The critic loss and the KL(q(z | c) || N(0, I)) term
train the encoder; the actor sees z with its gradient stopped.

One ``train_step`` is one reference iteration:

1. COLLECT on ``collect_tasks`` tasks of the fixed training pool: the task's context buffer is
   emptied, ``prior_steps`` steps are taken with z ~ N(0, I) (into the RL and context buffers),
   then ``posterior_context_steps`` with z ~ q(z | c), c sampled from the context buffer anew
   before each episode (into both buffers, so later episodes condition on earlier ones: the
   reference's ``num_steps_posterior``), then ``posterior_steps`` with z ~ q(z | c), c sampled
   from the final context buffer (into the RL buffer only: the reference's
   ``num_extra_rl_steps_posterior``). z is redrawn every episode. (The reference starts each
   posterior phase with one prior-z episode; here every posterior-phase episode uses q(z | c).)
2. TRAIN: ``gradient_steps`` SAC updates in one ``lax.scan``, each on ``num_tasks`` tasks with
   ``batch_size`` RL transitions and ``context_batch_size`` context transitions per task.

``rl_reward = "dense"`` follows the reference's sparse point robot (``sparse_rewards``): the
RL buffer, which feeds the actor and critic losses, stores the env's dense reward
(``info["dense_reward"]``) while the context buffer, the evaluation context and the reported
returns keep the env's own (sparse) reward; only task inference sees the sparse reward.

``init`` fills every pool task's buffers with ``initial_steps`` prior-z steps of the initial
policy. The buffers are ``[pool, capacity, ...]`` arrays in the state, sharded over devices
along the pool axis; task slots are drawn stratified (slot j of B draws from the pool block
``[jP/B, (j+1)P/B)``), so every shard samples only its own tasks and one device and eight
devices draw the same tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metajax import distributed, replay, rollout
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution
from metajax.errors import ConfigError
from metajax.learners import sac
from metajax.learners.base import Learner
from metajax.networks import MLP

# the env ``step`` info key of a dense reward for the RL losses (``Config.rl_reward = "dense"``)
DENSE_REWARD_KEY = "dense_reward"
RL_REWARDS = ("env", "dense")

# ----------------------------------------------------------------------------- posterior


class GaussianStats(NamedTuple):
    """Natural parameters of a product of diagonal Gaussian factors (sums, so incremental)."""

    precision: jax.Array  # [..., L] sum of 1 / var over the factors
    scaled_mean: jax.Array  # [..., L] sum of mean / var over the factors


def factor_stats(mean: jax.Array, var: jax.Array, mask: jax.Array | None = None) -> GaussianStats:
    """Sums the factors ``[..., C, L]`` (masked by ``mask [..., C]``) over the context axis C."""
    weight = jnp.ones(mean.shape[:-1]) if mask is None else mask.astype(mean.dtype)
    weight = weight[..., None]
    return GaussianStats(jnp.sum(weight / var, axis=-2), jnp.sum(weight * mean / var, axis=-2))


def combine(a: GaussianStats, b: GaussianStats) -> GaussianStats:
    """The stats of the union of two contexts."""
    return GaussianStats(a.precision + b.precision, a.scaled_mean + b.scaled_mean)


def posterior(stats: GaussianStats) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of the product; N(0, I) where no factor has been seen (k = 1)."""
    seen = stats.precision > 0
    var = jnp.where(seen, 1.0 / jnp.where(seen, stats.precision, 1.0), 1.0)
    return jnp.where(seen, stats.scaled_mean * var, 0.0), var


def product_of_gaussians(
    mean: jax.Array, var: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Product of the Gaussian factors ``[..., C, L]``: ``var = 1 / sum(1/var_i)``,
    ``mean = var * sum(mean_i / var_i)`` (the reference has no prior factor)."""
    return posterior(factor_stats(mean, var, mask))


def kl_to_standard_normal(mean: jax.Array, var: jax.Array) -> jax.Array:
    """KL(N(mean, var) || N(0, I)) over the last axis: ``0.5 sum(var + m^2 - 1 - log var)``."""
    return 0.5 * jnp.sum(var + mean**2 - 1.0 - jnp.log(var), axis=-1)


class ContextEncoder(nn.Module):
    """One Gaussian factor per transition: ``(mean, var) [..., L]``, var = softplus(.) >= 1e-7."""

    latent_size: int
    hidden_sizes: Sequence[int] = (200, 200, 200)
    activation: str = "relu"

    @nn.compact
    def __call__(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_sizes, 2 * self.latent_size, self.activation)(context)
        mean, raw = jnp.split(out, 2, axis=-1)
        return mean, jnp.maximum(jax.nn.softplus(raw), 1e-7)


def context_features(items: replay.Experience, next_obs: bool) -> jax.Array:
    """Encoder input per transition: (s, a, r[, s']) concatenated, ``[..., D]``."""
    parts = [items.obs, items.action, items.reward[..., None]]
    if next_obs:
        parts.append(items.next_obs)
    return jnp.concatenate(parts, axis=-1)


def stratified_tasks(keys: jax.Array, pool_size: int) -> jax.Array:
    """Task index per slot j of B = len(keys): uniform in the pool block [jP/B, (j+1)P/B).

    Blocks are disjoint when P >= B (distinct tasks); each has at least one task.
    """
    slots = keys.shape[0]
    j = jnp.arange(slots)
    low = j * pool_size // slots
    high = jnp.maximum((j + 1) * pool_size // slots, low + 1)
    draw = jax.vmap(lambda k, n: jax.random.randint(k, (), 0, n))(keys, high - low)
    return (low + draw).astype(jnp.int32)


# ----------------------------------------------------------------------------- config


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
    latent_size: int = 5
    hidden_sizes: tuple[int, ...] = (64, 64)
    encoder_hidden_sizes: tuple[int, ...] = (32, 32)
    activation: str = "relu"
    context_next_obs: bool = True  # the encoder sees s' (the reference's use_next_obs_in_context)
    kl_weight: float = 0.01  # on the meta-batch sum of KL(q(z|c) || N(0, I)); reference 0.1
    reward_scale: float = 5.0
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    encoder_lr: float = 1e-3
    temperature_lr: float = 1e-3
    init_temperature: float = 1.0
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

    def validate(self, horizon: int) -> None:
        """Raises ConfigError for impossible values (steps must be whole episodes)."""
        positive = (
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
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.posterior_context_steps < 0 or self.posterior_steps < 0:
            raise ConfigError("posterior_steps and posterior_context_steps must be non-negative")
        for name in ("initial_steps", "prior_steps", "posterior_steps", "posterior_context_steps"):
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


# ----------------------------------------------------------------------------- learner


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


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """PEARL on the task distribution ``tasks`` of ``env``: init, train_step, evaluate."""
    horizon = env.horizon
    config.validate(horizon)
    dense_rl_reward = config.rl_reward == "dense"
    if dense_rl_reward:
        check_dense_reward(env, tasks)
    low, high = sac.action_bounds(env)
    action_dim = low.shape[0] if low.ndim else 1
    obs_dim = int(jnp.size(jnp.zeros(env.observation_space().shape)))
    pool_size = tasks.num_train_tasks if tasks.num_train_tasks is not None else config.pool_size
    if config.collect_tasks > pool_size:
        raise ConfigError(
            f"collect_tasks ({config.collect_tasks}) exceeds the training pool ({pool_size})"
        )
    latent = config.latent_size
    actor = sac.TanhGaussianActor(action_dim, config.hidden_sizes, config.activation)
    critic = sac.TwinCritic(config.hidden_sizes, config.activation)
    encoder = ContextEncoder(latent, config.encoder_hidden_sizes, config.activation)
    actor_opt = optax.adam(config.actor_lr)
    critic_opt = optax.adam(config.critic_lr)
    encoder_opt = optax.adam(config.encoder_lr)
    alpha_opt = optax.adam(config.temperature_lr)
    target_entropy = -float(action_dim) if config.target_entropy is None else config.target_entropy
    context_capacity = max(
        config.initial_steps, config.prior_steps + config.posterior_context_steps
    )
    context_dim = (
        2 * obs_dim + action_dim + 1 if config.context_next_obs else obs_dim + action_dim + 1
    )
    example = replay.Experience(
        obs=jnp.zeros((obs_dim,)),
        action=jnp.zeros((action_dim,)),
        reward=jnp.zeros(()),
        next_obs=jnp.zeros((obs_dim,)),
        terminated=jnp.zeros(()),
    )

    def encode(encoder_params, items: replay.Experience, mask=None) -> GaussianStats:
        """Stats of the factors of context ``items`` (leaves [..., C, ...])."""
        mean, var = encoder.apply(encoder_params, context_features(items, config.context_next_obs))
        return factor_stats(mean, var, mask)

    def conditioned_policy(actor_params, z: jax.Array, deterministic: bool) -> rollout.Policy:
        """pi(a | s, z) for ``rollout``; z [B, L] fixed for the call."""

        def policy(carry, obs, first, keys):
            del first
            mean, log_std = actor.apply(
                actor_params, jnp.concatenate([sac.flat_obs(obs, 1), z], -1)
            )
            if deterministic:
                unit = jnp.tanh(mean)
            else:
                noise = sac.normal_per_env(keys, (action_dim,))
                unit, _ = sac.sample_tanh_gaussian(noise, mean, log_std)
            return carry, sac.scale_action(unit, low, high), {"unit_action": unit}

        return policy

    def run_episode(actor_params, task: EnvParams, z, keys, deterministic: bool):
        """One episode (H steps from a reset) per task [B] with latent z [B, L]."""
        reset_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 0)
        step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 1)
        start = rollout.reset(env, task, reset_keys)
        policy = conditioned_policy(actor_params, z, deterministic)
        _, traj = rollout.rollout(env, policy, start, task, step_keys, horizon)
        return traj  # [H, B]

    def rl_items(traj, items: replay.Experience) -> replay.Experience:
        """The RL buffer's items: ``items`` (the env's reward), or with the dense reward."""
        if not dense_rl_reward:
            return items
        dense = jnp.swapaxes(traj.info[DENSE_REWARD_KEY], 0, 1).astype(jnp.float32)  # [B, H]
        return items._replace(reward=dense)

    def collect(
        params: Params,
        rl_buf,
        ctx_buf,
        task,
        keys,
        prior_episodes: int,
        posterior_episodes: int,
        context_posterior_episodes: int = 0,
    ):
        """Prior-z episodes (RL + context buffers), posterior-z episodes with the posterior refit
        before each from the growing context buffer (RL + context buffers), then posterior-z
        episodes with the posterior of the final context buffer (RL buffer only).

        Buffers, tasks and keys are those of the B collected tasks; returns the buffers and the
        mean episode returns (the env's reward) of the prior and of the posterior episodes.
        """

        def prior_episode(carry, e):
            rl_buf, ctx_buf = carry
            ep_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, e)
            z = sac.normal_per_env(jax.vmap(jax.random.fold_in, (0, None))(ep_keys, 7), (latent,))
            traj = run_episode(params.actor, task, z, ep_keys, deterministic=False)
            items = sac.time_to_items(sac.to_experience(traj))
            returns = rollout.episode_returns(traj, 1)[:, 0]
            rl_buf = replay.add(rl_buf, rl_items(traj, items))
            return (rl_buf, replay.add(ctx_buf, items)), returns

        def posterior_episode(e, ctx_buf):
            """Episode ``e`` of the task with z ~ q(z | c), c sampled from ``ctx_buf``."""
            ep_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, e)
            ctx_keys = jax.vmap(jax.random.fold_in, (0, None))(ep_keys, 8)
            context = replay.sample(ctx_buf, ctx_keys, config.context_batch_size)
            mean, var = posterior(encode(params.encoder, context))
            noise = sac.normal_per_env(
                jax.vmap(jax.random.fold_in, (0, None))(ep_keys, 7), (latent,)
            )
            z = mean + jnp.sqrt(var) * noise
            traj = run_episode(params.actor, task, z, ep_keys, deterministic=False)
            items = sac.time_to_items(sac.to_experience(traj))
            return traj, items, rollout.episode_returns(traj, 1)[:, 0]

        def context_posterior_episode(carry, e):
            rl_buf, ctx_buf = carry
            traj, items, returns = posterior_episode(prior_episodes + e, ctx_buf)
            rl_buf = replay.add(rl_buf, rl_items(traj, items))
            return (rl_buf, replay.add(ctx_buf, items)), returns

        def rl_posterior_episode(rl_buf, e, ctx_buf):
            episode = prior_episodes + context_posterior_episodes + e
            traj, items, returns = posterior_episode(episode, ctx_buf)
            return replay.add(rl_buf, rl_items(traj, items)), returns

        (rl_buf, ctx_buf), prior_returns = jax.lax.scan(
            prior_episode, (rl_buf, ctx_buf), jnp.arange(prior_episodes)
        )
        posterior_returns = []
        if context_posterior_episodes:
            (rl_buf, ctx_buf), returns = jax.lax.scan(
                context_posterior_episode, (rl_buf, ctx_buf), jnp.arange(context_posterior_episodes)
            )
            posterior_returns.append(returns)
        if posterior_episodes:
            rl_buf, returns = jax.lax.scan(
                lambda buf, e: rl_posterior_episode(buf, e, ctx_buf),
                rl_buf,
                jnp.arange(posterior_episodes),
            )
            posterior_returns.append(returns)
        posterior_return = (
            jnp.mean(jnp.concatenate(posterior_returns)) if posterior_returns else jnp.float32(0.0)
        )
        return rl_buf, ctx_buf, jnp.mean(prior_returns), posterior_return

    def init(key: jax.Array) -> State:
        key_pool, key_actor, key_critic, key_encoder, key_collect = jax.random.split(key, 5)
        if tasks.num_train_tasks is not None:
            pool = tasks.train_tasks()
        else:
            pool = tasks.sample(key_pool, pool_size)
        actor_params = actor.init(key_actor, jnp.zeros((1, obs_dim + latent)))
        critic_params = critic.init(
            key_critic, jnp.zeros((1, obs_dim + latent)), jnp.zeros((1, action_dim))
        )
        encoder_params = encoder.init(key_encoder, jnp.zeros((1, context_dim)))
        log_alpha = jnp.log(jnp.float32(config.init_temperature))
        params = Params(actor_params, critic_params, critic_params, encoder_params, log_alpha)
        opt = OptStates(
            actor_opt.init(actor_params),
            critic_opt.init(critic_params),
            encoder_opt.init(encoder_params),
            alpha_opt.init(log_alpha),
        )
        rl_buf = replay.init(example, pool_size, config.rl_capacity)
        ctx_buf = replay.init(example, pool_size, context_capacity)
        # INITIAL COLLECTION on every pool task with the initial policy and z ~ N(0, I)
        keys = jax.random.split(key_collect, pool_size)
        rl_buf, ctx_buf, _, _ = collect(
            params, rl_buf, ctx_buf, pool, keys, config.initial_steps // horizon, 0
        )
        return State(params, opt, rl_buf, ctx_buf, pool, jnp.int32(0))

    def sac_update(params: Params, opt: OptStates, batch, context, noise, axis_name):
        """One PEARL/SAC update on local tasks: batch [b, N, ...], context [b, C, ...].

        ``noise`` = (z noise [b, L], next-action noise [b, N, A], new-action noise [b, N, A]).
        """
        z_noise, next_noise, new_noise = noise
        alpha = jnp.exp(params.log_alpha)
        n = batch.reward.shape[1]

        def critic_objective(critic_params, encoder_params):
            mean, var = posterior(encode(encoder_params, context))  # [b, L]
            z = mean + jnp.sqrt(var) * z_noise  # reparameterized: the critic loss trains q(z|c)
            z_n = jnp.broadcast_to(z[:, None], (z.shape[0], n, latent))
            z_fixed = jax.lax.stop_gradient(z_n)
            next_x = jnp.concatenate([batch.next_obs, z_fixed], -1)
            next_mean, next_log_std = actor.apply(params.actor, next_x)
            next_action, next_log_prob = sac.sample_tanh_gaussian(
                next_noise, next_mean, next_log_std
            )
            next_q = critic.apply(params.target_critic, next_x, next_action)
            target = sac.soft_q_target(
                batch.reward,
                batch.terminated,
                next_q,
                next_log_prob,
                alpha,
                config.gamma,
                config.reward_scale,
            )
            q = critic.apply(critic_params, jnp.concatenate([batch.obs, z_n], -1), batch.action)
            kl = kl_to_standard_normal(mean, var)  # [b]
            # the reference sums the KL over the meta-batch: num_tasks * (mean over tasks)
            kl_loss = config.kl_weight * config.num_tasks * jnp.mean(kl)
            q_loss = sac.critic_loss(q, target)
            aux = (z_fixed, q_loss, jnp.mean(q), jnp.mean(kl), jnp.mean(var))
            return q_loss + kl_loss, aux

        grad_fn = jax.grad(critic_objective, argnums=(0, 1), has_aux=True)
        (critic_grads, encoder_grads), aux = grad_fn(params.critic, params.encoder)
        z_fixed, q_loss, q_mean, kl, z_var = aux
        critic_grads, encoder_grads = distributed.pmean((critic_grads, encoder_grads), axis_name)
        updates, critic_state = critic_opt.update(critic_grads, opt.critic, params.critic)
        critic_params = optax.apply_updates(params.critic, updates)
        updates, encoder_state = encoder_opt.update(encoder_grads, opt.encoder, params.encoder)
        encoder_params = optax.apply_updates(params.encoder, updates)

        x = jnp.concatenate([batch.obs, z_fixed], -1)  # the actor loss does not train q(z|c)

        def actor_objective(actor_params):
            mean, log_std = actor.apply(actor_params, x)
            action, log_prob = sac.sample_tanh_gaussian(new_noise, mean, log_std)
            q = critic.apply(critic_params, x, action)
            return sac.actor_loss(log_prob, q, alpha), log_prob

        (a_loss, log_prob), grads = jax.value_and_grad(actor_objective, has_aux=True)(params.actor)
        grads = distributed.pmean(grads, axis_name)
        updates, actor_state = actor_opt.update(grads, opt.actor, params.actor)
        actor_params = optax.apply_updates(params.actor, updates)

        log_alpha, alpha_state = params.log_alpha, opt.alpha
        if config.auto_temperature:
            grad = jax.grad(sac.temperature_loss)(params.log_alpha, log_prob, target_entropy)
            grad = distributed.pmean(grad, axis_name)
            updates, alpha_state = alpha_opt.update(grad, opt.alpha, params.log_alpha)
            log_alpha = optax.apply_updates(params.log_alpha, updates)

        target = sac.polyak(params.target_critic, critic_params, config.tau)
        new_params = Params(actor_params, critic_params, target, encoder_params, log_alpha)
        new_opt = OptStates(actor_state, critic_state, encoder_state, alpha_state)
        metrics = {
            "critic_loss": q_loss,
            "actor_loss": a_loss,
            "kl": kl,
            "q_mean": q_mean,
            "z_var": z_var,
            "entropy": -jnp.mean(log_prob),
            "alpha": alpha,
        }
        return new_params, new_opt, metrics

    def shard_offset(axis_name: str | None) -> jax.Array:
        """Pool index of this shard's first task."""
        if axis_name is None:
            return jnp.int32(0)
        return jax.lax.axis_index(axis_name) * distributed.local_size(pool_size, axis_name)

    def make_train_step(axis_name: str | None):
        def train_step(state: State, key: jax.Array):
            key_collect, key_grad = jax.random.split(key)
            offset = shard_offset(axis_name)

            # COLLECT on collect_tasks pool tasks (this shard's share of them)
            key_select, key_run = jax.random.split(key_collect)
            chosen = stratified_tasks(jax.random.split(key_select, config.collect_tasks), pool_size)
            chosen, run_keys = distributed.local_slice(
                (chosen, jax.random.split(key_run, config.collect_tasks)), axis_name
            )
            chosen = chosen - offset
            task = jax.tree.map(lambda x: x[chosen], state.pool)
            rl_part = replay.select(state.rl_buffer, chosen)
            ctx_part = replay.select(state.context_buffer, chosen)
            ctx_part = replay.clear_at(ctx_part, jnp.arange(chosen.shape[0]))
            rl_part, ctx_part, prior_return, posterior_return = collect(
                state.params,
                rl_part,
                ctx_part,
                task,
                run_keys,
                config.prior_steps // horizon,
                config.posterior_steps // horizon,
                config.posterior_context_steps // horizon,
            )
            rl_buffer = replay.scatter(state.rl_buffer, chosen, rl_part)
            ctx_buffer = replay.scatter(state.context_buffer, chosen, ctx_part)

            # TRAIN: gradient_steps updates, each on num_tasks stratified pool tasks
            def update(carry, key):
                params, opt = carry
                key_tasks, key_rl, key_ctx, key_noise = jax.random.split(key, 4)
                b = config.num_tasks
                slots = stratified_tasks(jax.random.split(key_tasks, b), pool_size)
                slots, rl_keys, ctx_keys, noise_keys = distributed.local_slice(
                    (
                        slots,
                        jax.random.split(key_rl, b),
                        jax.random.split(key_ctx, b),
                        jax.random.split(key_noise, b),
                    ),
                    axis_name,
                )
                slots = slots - offset
                batch = replay.sample_at(rl_buffer, slots, rl_keys, config.batch_size)
                context = replay.sample_at(ctx_buffer, slots, ctx_keys, config.context_batch_size)

                def draw(k):
                    k1, k2, k3 = jax.random.split(k, 3)
                    shape = (config.batch_size, action_dim)
                    return (
                        jax.random.normal(k1, (latent,)),
                        jax.random.normal(k2, shape),
                        jax.random.normal(k3, shape),
                    )

                noise = jax.vmap(draw)(noise_keys)
                params, opt, metrics = sac_update(params, opt, batch, context, noise, axis_name)
                return (params, opt), metrics

            (params, opt), metrics = jax.lax.scan(
                update, (state.params, state.opt), jax.random.split(key_grad, config.gradient_steps)
            )
            metrics = {k: jnp.mean(v) for k, v in metrics.items()}
            metrics["prior_return"] = prior_return
            metrics["posterior_return"] = posterior_return
            metrics = distributed.pmean(metrics, axis_name)
            new_state = State(params, opt, rl_buffer, ctx_buffer, state.pool, state.step + 1)
            return new_state, metrics

        return train_step

    def evaluate(state: State, key: jax.Array, eval_tasks: EnvParams) -> jax.Array:
        """Return of episode k = 1..K on each task: ``[num_tasks, K]``.

        Episode k acts (deterministically) with z ~ q(z | c), c = the transitions of episodes
        1..k-1 of the same task (k = 1: z ~ N(0, I)), each up to its first done. Returns and
        context use the env's own reward, whatever ``rl_reward`` is.
        """
        n = jax.tree.leaves(eval_tasks)[0].shape[0]
        keys = jax.random.split(key, n)

        def episode(stats: GaussianStats, k):
            ep_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, k)
            mean, var = posterior(stats)  # the prior while no context is seen
            noise = sac.normal_per_env(
                jax.vmap(jax.random.fold_in, (0, None))(ep_keys, 7), (latent,)
            )
            z = mean + jnp.sqrt(var) * noise
            traj = run_episode(state.params.actor, eval_tasks, z, ep_keys, deterministic=True)
            done = traj.done.astype(jnp.int32)
            first_episode = (jnp.cumsum(done, axis=0) - done) == 0  # [H, n]
            items = sac.time_to_items(sac.to_experience(traj))  # [n, H, ...]
            stats = combine(stats, encode(state.params.encoder, items, first_episode.T))
            return stats, rollout.episode_returns(traj, 1)[:, 0]

        empty = GaussianStats(jnp.zeros((n, latent)), jnp.zeros((n, latent)))
        _, returns = jax.lax.scan(episode, empty, jnp.arange(config.eval_episodes))
        return returns.T

    def state_partition(state: State, axis_name: str):
        """The per-task buffers and the pool sharded over ``axis_name``; the rest replicated."""
        shard = lambda tree: distributed.partition_like(tree, axis_name)
        replicate = distributed.partition_like
        return State(
            params=replicate(state.params),
            opt=replicate(state.opt),
            rl_buffer=shard(state.rl_buffer),
            context_buffer=shard(state.context_buffer),
            pool=shard(state.pool),
            step=jax.P(),
        )

    return Learner(
        name="pearl",
        init=init,
        evaluate=evaluate,
        adaptation_unit="episode",
        env_steps_per_update=config.collect_tasks
        * (config.prior_steps + config.posterior_context_steps + config.posterior_steps),
        make_train_step=make_train_step,
        return_metric="posterior_return",
        state_partition=state_partition,
    )
