"""RL² (Duan et al. 2016): a recurrent policy whose memory spans the K episodes of a trial.

The task is drawn once per trial; the env is wrapped in ``TrialWrapper`` so the network sees
the previous action, reward and episode-done flag, and its memory is reset only between
trials. The outer loop is PPO with GAE over the whole trial (the discount runs across the
episode boundaries inside a trial). Every update collects exactly one trial per task in
``[T = K * horizon, tasks]`` steps; steps after a trial ends early are masked out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax import distributed, networks, rollout
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution
from metajax.envs.wrappers import TrialWrapper
from metajax.errors import ConfigError
from metajax.learners import ppo
from metajax.learners.base import Learner


@dataclass(frozen=True)
class Config:
    """RL² hyperparameters. Shapes (tasks, sizes, epochs) are static; the rest are numbers."""

    num_tasks: int = 512  # trials per update, one task each (sharded over devices)
    episodes_per_trial: int = 10  # K; for bandits each pull is an episode, so K = n pulls
    core: str = "gru"  # memory core: gru | lstm
    core_size: int = 128
    hidden_sizes: tuple[int, ...] = (128,)
    activation: str = "tanh"
    learning_rate: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    update_epochs: int = 4
    num_minibatches: int = 4
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0  # rewards are multiplied by this for the losses (not the metrics)

    def validate(self) -> None:
        """Raises ConfigError for impossible sizes."""
        positive = ("num_tasks", "episodes_per_trial", "core_size", "update_epochs")
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
        if self.core not in networks.MEMORY_CORES:
            raise ConfigError(
                f"unknown memory core '{self.core}'; allowed: {', '.join(networks.MEMORY_CORES)}"
            )
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")


class State(NamedTuple):
    """RL² training state: network parameters and optimizer state."""

    params: dict
    opt_state: optax.OptState


def make_network(config: Config, env: TrialWrapper) -> networks.RecurrentActorCritic:
    """The recurrent actor-critic for ``env``'s action space."""
    from gymnax.environments import spaces

    action_space = env.action_space()
    discrete = isinstance(action_space, spaces.Discrete)
    action_dim = action_space.n if discrete else action_space.shape[0]
    return networks.RecurrentActorCritic(
        action_dim=action_dim,
        discrete=discrete,
        core=config.core,
        core_size=config.core_size,
        hidden_sizes=config.hidden_sizes,
        activation=config.activation,
    )


def make_policy(config: Config, network: networks.RecurrentActorCritic, params) -> rollout.Policy:
    """RL²'s acting function for ``rollout``: memory reset where a new trial starts."""
    fresh = lambda batch: networks.initial_carry(config.core, config.core_size, batch)

    def policy(carry, obs, first, keys):
        carry = networks.reset_carry(carry, fresh(obs.shape[0]), first)
        carry, (dist, value) = network.apply(params, carry, obs)
        action = jax.vmap(lambda k, d: networks.sample_action(k, d, network.discrete))(keys, dist)
        log_prob = networks.log_prob(dist, action, network.discrete)
        return carry, action, {"log_prob": log_prob, "value": value}

    return policy


def trial_mask(trial_done: jax.Array) -> jax.Array:
    """[T, B] true for the steps of the first trial (up to and including its last step)."""
    done = trial_done.astype(jnp.int32)
    return (jnp.cumsum(done, axis=0) - done) == 0


def run_trials(
    config: Config,
    env: TrialWrapper,
    network: networks.RecurrentActorCritic,
    params,
    tasks: EnvParams,
    keys: jax.Array,
):
    """One trial per task [B] from fresh memory; returns ``[T, B]`` transitions and the mask."""
    batch = keys.shape[0]
    reset_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 0)
    step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, 1)
    carry = networks.initial_carry(config.core, config.core_size, batch)
    start = rollout.reset(env, tasks, reset_keys, carry)
    policy = make_policy(config, network, params)
    _, transitions = rollout.rollout(env, policy, start, tasks, step_keys, env.horizon)
    return transitions, trial_mask(transitions.done)


def episode_returns_in_trial(transitions, mask: jax.Array, episodes: int) -> jax.Array:
    """Return of episode k = 1..K of each trial: ``[B, K]``."""
    index = transitions.info["episode_index"]  # [T, B]
    one_hot = jax.nn.one_hot(index, episodes, dtype=jnp.float32) * mask[..., None]
    return jnp.einsum("tb,tbk->bk", transitions.reward, one_hot)


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """RL² on the task distribution ``tasks`` of ``env``: init, train_step, evaluate."""
    config.validate()
    trial_env = TrialWrapper(env, config.episodes_per_trial)
    network = make_network(config, trial_env)
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(config.learning_rate, eps=1e-5),
    )
    num_steps = trial_env.horizon

    def init(key: jax.Array) -> State:
        carry = networks.initial_carry(config.core, config.core_size, 1)
        obs = jnp.zeros((1, *trial_env.observation_space().shape), jnp.float32)
        params = network.init(key, carry, obs)
        return State(params, optimizer.init(params))

    def sequence_outputs(params, obs, first):
        """Re-runs the network over [T, B] observations from fresh memory."""
        fresh = networks.initial_carry(config.core, config.core_size, obs.shape[1])

        def step(carry, inputs):
            obs_t, first_t = inputs
            carry = networks.reset_carry(carry, fresh, first_t)
            carry, (dist, value) = network.apply(params, carry, obs_t)
            return carry, (dist, value)

        _, (dist, value) = jax.lax.scan(step, fresh, (obs, first))
        return dist, value

    def make_train_step(axis_name: str | None):
        def train_step(state: State, key: jax.Array):
            key_tasks, key_envs, key_epochs = jax.random.split(key, 3)
            # COLLECT TRIALS: the global batch is drawn, each shard keeps its slice
            global_tasks = tasks.sample(key_tasks, config.num_tasks)
            global_keys = jax.random.split(key_envs, config.num_tasks)
            local_tasks, local_keys = distributed.local_slice(
                (global_tasks, global_keys), axis_name
            )
            batch = distributed.local_size(config.num_tasks, axis_name)
            if batch % config.num_minibatches:
                raise ConfigError(
                    f"each device's {batch} tasks do not split into {config.num_minibatches} "
                    f"minibatches; make num_tasks / devices a multiple of num_minibatches"
                )
            traj, mask = run_trials(
                config, trial_env, network, state.params, local_tasks, local_keys
            )

            # ADVANTAGES over the whole trial; the trial's end is the only true episode end
            values = traj.extras["value"]
            advantages, returns = ppo.compute_gae(
                traj.reward * config.reward_scale,
                values,
                traj.done,
                jnp.zeros((batch,)),
                config.gamma,
                config.gae_lambda,
            )
            count = distributed.psum(jnp.sum(mask), axis_name)
            mean = distributed.psum(jnp.sum(advantages * mask), axis_name) / count
            var = distributed.psum(jnp.sum(((advantages - mean) * mask) ** 2), axis_name) / count
            advantages = (advantages - mean) / (jnp.sqrt(var) + 1e-8)
            first = jnp.concatenate([jnp.ones((1, batch), bool), traj.done[:-1]], axis=0)

            # PPO EPOCHS over minibatches of whole trials
            def loss_fn(params, data):
                obs, first, action, old_log_prob, old_value, adv, ret, mask = data
                dist, value = sequence_outputs(params, obs, first)
                log_prob = networks.log_prob(dist, action, network.discrete)
                policy_loss = ppo.clipped_surrogate_loss(
                    log_prob, old_log_prob, adv, config.clip_eps, mask
                )
                value_loss = ppo.clipped_value_loss(value, old_value, ret, config.clip_eps, mask)
                entropy = ppo.masked_mean(networks.entropy(dist, network.discrete), mask)
                loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
                approx_kl = ppo.masked_mean(old_log_prob - log_prob, mask)
                return loss, {
                    "policy_loss": policy_loss,
                    "value_loss": value_loss,
                    "entropy": entropy,
                    "approx_kl": approx_kl,
                }

            data = (
                traj.obs,
                first,
                traj.action,
                traj.extras["log_prob"],
                values,
                advantages,
                returns,
                mask,
            )
            minibatch = batch // config.num_minibatches

            def epoch(state: State, key: jax.Array):
                order = jax.random.permutation(key, batch)
                shuffled = jax.tree.map(lambda x: jnp.take(x, order, axis=1), data)
                split = jax.tree.map(
                    lambda x: x.reshape(
                        x.shape[0], config.num_minibatches, minibatch, *x.shape[2:]
                    ).swapaxes(0, 1),
                    shuffled,
                )

                def update(state: State, minibatch_data):
                    grads, info = jax.grad(loss_fn, has_aux=True)(state.params, minibatch_data)
                    grads, info = distributed.pmean((grads, info), axis_name)
                    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
                    return State(optax.apply_updates(state.params, updates), opt_state), info

                return jax.lax.scan(update, state, split)

            state, info = jax.lax.scan(
                epoch, state, jax.random.split(key_epochs, config.update_epochs)
            )
            trial_return = jnp.sum(traj.reward * mask, axis=0)
            metrics = {k: jnp.mean(v) for k, v in info.items()}
            metrics["trial_return"] = distributed.pmean(jnp.mean(trial_return), axis_name)
            metrics["env_steps"] = count
            return state, metrics

        return train_step

    def evaluate(state: State, key: jax.Array, eval_tasks: EnvParams) -> jax.Array:
        """Return of episode k = 1..K of one trial on each given task: ``[num_tasks, K]``."""
        n = jax.tree.leaves(eval_tasks)[0].shape[0]
        traj, mask = run_trials(
            config, trial_env, network, state.params, eval_tasks, jax.random.split(key, n)
        )
        return episode_returns_in_trial(traj, mask, config.episodes_per_trial)

    def act(state: State, carry, obs: jax.Array, first: jax.Array, keys: jax.Array):
        """One step of the trained policy on trial observations [B, ...] (memory in carry)."""
        if carry is None:
            carry = networks.initial_carry(config.core, config.core_size, obs.shape[0])
        return make_policy(config, network, state.params)(carry, obs, first, keys)

    return Learner(
        name="rl2",
        init=init,
        evaluate=evaluate,
        adaptation_unit="episode",
        env_steps_per_update=config.num_tasks * num_steps,
        make_train_step=make_train_step,
        return_metric="trial_return",
        act=act,
    )
