"""VariBAD's learner: acting on the belief, PPO over whole trials, VAE steps from the buffer.

Each update collects one trial (K episodes, the BAMDP horizon) per task; the policy acts on
(s, belief mean, belief log-variance), the encoder reset only at trial starts. PPO with GAE
over the whole trial (the discount runs across the episode boundaries inside it) trains the
policy on the beliefs recorded while acting (``stop_gradient``: the RL loss does not train the
encoder unless ``rl_loss_through_encoder``, which re-encodes the trials inside the loss). The
trials then enter the VAE buffer and ``vae_updates`` ELBO steps follow.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax

from metajax import distributed, networks, rollout
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution
from metajax.learners import representation, rl2, trial_ppo
from metajax.learners.base import Learner, Metrics
from metajax.learners.varibad import buffer as trial_buffer
from metajax.learners.varibad import vae
from metajax.learners.varibad.config import Config, Params, Setup, State, make_setup
from metajax.types import Transition

Minibatch = trial_ppo.Trials  # whole trials; extras hold the beliefs (mean, logvar)


def rl_params(setup: Setup, params: Params) -> dict:
    """What the PPO optimizer trains: the policy (and the encoder if the RL loss reaches it)."""
    trained = {"policy": params.policy}
    if setup.config.rl_loss_through_encoder:
        trained["encoder"] = params.vae["encoder"]
    return trained


def init(setup: Setup, key: jax.Array) -> State:
    """Fresh networks, optimizer states and an empty VAE buffer."""
    config = setup.config
    k_enc, k_rew, k_trans, k_pol = jax.random.split(key, 4)
    hidden = vae.zero_hidden(setup, 1)
    s = jnp.zeros((1, setup.state_dim))
    a, r = jnp.zeros((1, setup.action_dim)), jnp.zeros((1,))
    latent = jnp.zeros((1, config.latent_size))
    params_vae = {
        "encoder": setup.encoder.init(k_enc, hidden, s, a, r, method="initialize"),
        "reward_decoder": setup.reward_decoder.init(k_rew, latent, s, a, s),
    }
    if setup.transition_decoder is not None:
        params_vae["transition_decoder"] = setup.transition_decoder.init(k_trans, latent, s, a, s)
    policy = setup.policy.init(k_pol, s, jnp.zeros((1, 2 * config.latent_size)))
    params = Params(policy, params_vae)
    return State(
        params=params,
        policy_opt=setup.policy_optimizer.init(rl_params(setup, params)),
        vae_opt=setup.vae_optimizer.init(params_vae),
        buffer=trial_buffer.empty(setup),
        count=jnp.int32(0),
    )


def policy_outputs(setup: Setup, policy_params, obs: jax.Array, mean, logvar):
    """(distribution, value) of the policy on (s, belief mean, belief log-variance)."""
    state = obs[..., : setup.state_dim]
    return setup.policy.apply(policy_params, state, jnp.concatenate([mean, logvar], axis=-1))


def policy_step(setup: Setup, params: Params, carry, obs: jax.Array, first, keys: jax.Array):
    """One acting step on [B] trials: the encoder reads ``obs`` (reset where ``first``), the
    policy samples an action on the new belief."""
    hidden = vae.encoder_step(setup, params.vae["encoder"], carry, obs, first)
    mean, logvar = vae.belief(setup, params.vae["encoder"], hidden)
    dist, value = policy_outputs(setup, params.policy, obs, mean, logvar)
    action = jax.vmap(lambda k, d: networks.sample_action(k, d, setup.discrete))(keys, dist)
    log_prob = networks.log_prob(dist, action, setup.discrete)
    return hidden, action, {"log_prob": log_prob, "value": value, "mean": mean, "logvar": logvar}


def run_trials(
    setup: Setup, params: Params, tasks: EnvParams, keys: jax.Array
) -> tuple[Transition, jax.Array]:
    """One trial per task [B] from the prior; returns ``[T, B]`` transitions and the mask."""
    policy = partial(policy_step, setup, params)
    carry = vae.zero_hidden(setup, keys.shape[0])
    _, traj = rollout.run(setup.env, policy, tasks, keys, setup.env.horizon, carry)
    return traj, trial_ppo.trial_mask(traj.done)


def ppo_loss(setup: Setup, trained: dict, minibatch: Minibatch) -> tuple[jax.Array, Metrics]:
    """PPO's clipped loss over whole trials [T, B]; returns ``(loss, info)``."""
    config, mb = setup.config, minibatch
    if config.rl_loss_through_encoder:
        mean, logvar = vae.beliefs_along(setup, trained["encoder"], mb.obs, mb.first)
    else:
        mean, logvar = jax.lax.stop_gradient((mb.extras["mean"], mb.extras["logvar"]))
    dist, value = policy_outputs(setup, trained["policy"], mb.obs, mean, logvar)
    return trial_ppo.clipped_loss(dist, value, setup.discrete, mb, config)


def trial_data(setup: Setup, traj: Transition, mask: jax.Array, axis_name) -> Minibatch:
    """GAE over the whole trial (its end is the only true episode end), standardized; the
    beliefs the actions were taken on ride along."""
    beliefs = {"mean": traj.extras["mean"], "logvar": traj.extras["logvar"]}
    return trial_ppo.trials(traj, mask, setup.config, axis_name, beliefs)


def ppo_update(setup: Setup, state: State, data: Minibatch, key: jax.Array, axis_name):
    """PPO epochs; returns the params with the new policy (and encoder), the optimizer state
    and the mean loss info."""
    trained, opt, info = trial_ppo.epochs(
        partial(ppo_loss, setup),
        setup.policy_optimizer,
        rl_params(setup, state.params),
        state.policy_opt,
        data,
        key,
        setup.config,
        axis_name,
    )
    params = state.params._replace(policy=trained["policy"])
    if "encoder" in trained:
        params = params._replace(vae={**params.vae, "encoder": trained["encoder"]})
    return params, opt, info


def vae_step(setup: Setup, buffer, count, axis_name, carry, key: jax.Array):
    """One ELBO gradient step on a batch of buffered trials (a ``lax.scan`` body)."""
    params, opt_state = carry
    batch, loss_keys = trial_buffer.sample(setup, buffer, count, key, axis_name)
    grad_fn = jax.grad(partial(vae.elbo_loss, setup), has_aux=True)
    grads, info = grad_fn(params, batch, loss_keys)
    grads, info = distributed.pmean((grads, info), axis_name)
    updates, opt_state = setup.vae_optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), info


def check_local_sizes(setup: Setup, axis_name: str | None) -> None:
    """ConfigError when a shard's tasks or VAE batch do not split as configured."""
    config = setup.config
    distributed.local_size(config.vae_batch_trials, axis_name)
    trial_ppo.check_minibatches(config.num_tasks, config.num_minibatches, axis_name)


def train_step(
    setup: Setup, state: State, key: jax.Array, *, axis_name: str | None = None
) -> tuple[State, Metrics]:
    """One update: a trial per task, PPO epochs over them, then VAE steps from the buffer."""
    config = setup.config
    check_local_sizes(setup, axis_name)
    key_tasks, key_envs, key_epochs, key_vae = jax.random.split(key, 4)
    # COLLECT TRIALS: the global batch is drawn, each shard keeps its slice
    tasks, keys = distributed.local_task_draw(
        setup.tasks, key_tasks, key_envs, config.num_tasks, axis_name
    )
    traj, mask = run_trials(setup, state.params, tasks, keys)
    # POLICY: PPO over whole trials on the recorded beliefs
    data = trial_data(setup, traj, mask, axis_name)
    params, policy_opt, metrics = ppo_update(setup, state, data, key_epochs, axis_name)
    # VAE: the new trials join the buffer, then ELBO steps on buffered trials
    buffer = trial_buffer.add(
        state.buffer, trial_buffer.trial_batch(traj, mask), state.count, setup.depth
    )
    count = state.count + 1
    (params_vae, vae_opt), vae_info = jax.lax.scan(
        partial(vae_step, setup, buffer, count, axis_name),
        (params.vae, state.vae_opt),
        jax.random.split(key_vae, config.vae_updates),
    )
    metrics.update({k: jnp.mean(v) for k, v in vae_info.items()})
    trial_return = jnp.sum(traj.reward * mask, axis=0)  # [B]
    last = jnp.maximum(jnp.sum(mask, axis=0) - 1, 0)  # [B] the trial's last step
    final_var = jnp.exp(jnp.take_along_axis(traj.extras["logvar"], last[None, :, None], 0))
    metrics["trial_return"] = distributed.pmean(jnp.mean(trial_return), axis_name)
    metrics["belief_var_end"] = distributed.pmean(jnp.mean(final_var), axis_name)
    metrics["env_steps"] = distributed.psum(jnp.sum(mask), axis_name)
    new_state = State(params._replace(vae=params_vae), policy_opt, vae_opt, buffer, count)
    return new_state, metrics


def make_train_step(setup: Setup, axis_name: str | None):
    """``train_step`` for one shard of the task axis ``axis_name`` (None: one device)."""
    return partial(train_step, setup, axis_name=axis_name)


def evaluate(setup: Setup, state: State, key: jax.Array, tasks: EnvParams) -> jax.Array:
    """Return of episode k = 1..K of one trial on each given task: ``[num_tasks, K]``."""
    n = jax.tree.leaves(tasks)[0].shape[0]
    traj, mask = run_trials(setup, state.params, tasks, jax.random.split(key, n))
    return rl2.episode_returns_in_trial(traj, mask, setup.config.episodes_per_trial)


def act(setup: Setup, state: State, carry, obs: jax.Array, first: jax.Array, keys: jax.Array):
    """One step of the trained policy on trial observations [B, ...] (encoder state in carry;
    extras hold the belief)."""
    if carry is None:
        carry = vae.zero_hidden(setup, obs.shape[0])
    return policy_step(setup, state.params, carry, obs, first, keys)


def state_partition(state: State, axis_name: str) -> State:
    """The VAE buffer sharded over ``axis_name`` (slot axis); the rest replicated."""
    replicated = partial(distributed.partition_like, axis_name=None)
    return State(
        params=replicated(state.params),
        policy_opt=replicated(state.policy_opt),
        vae_opt=replicated(state.vae_opt),
        buffer=distributed.partition_like(state.buffer, axis_name),
        count=replicated(state.count),
    )


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """VariBAD on the task distribution ``tasks`` of ``env``: init, train_step, evaluate."""
    config.validate(env)
    setup = make_setup(config, env, tasks)
    return Learner(
        name="varibad",
        init=partial(init, setup),
        make_train_step=partial(make_train_step, setup),
        evaluate=partial(evaluate, setup),
        adaptation_unit="episode",
        env_steps_per_update=config.num_tasks * setup.env.horizon,
        return_metric="trial_return",
        state_partition=state_partition,
        act=partial(act, setup),
        represent=partial(represent, setup),
    )


def represent(setup: Setup, state: State, key: jax.Array, tasks: EnvParams):
    """VariBAD's belief (mean, log-variance) over one trial per task: row t is the belief
    after reading observation t (which carries step t-1's action and reward): steps 0..t-1."""
    n = jax.tree.leaves(tasks)[0].shape[0]
    traj, mask = run_trials(setup, state.params, tasks, jax.random.split(key, n))  # [T, n]
    belief = jnp.concatenate([traj.extras["mean"], traj.extras["logvar"]], axis=-1)
    return representation.Representation(
        features=jnp.swapaxes(belief, 0, 1),  # [n, T, 2 L]
        valid=mask.T,
        seen=jnp.arange(mask.shape[0]),
        unit=traj.info["episode_index"].T,
        transitions=representation.strip_extras(traj),
        mask=mask,
    )
