"""PEARL (Rakelly et al. 2019): SAC conditioned on a task latent z inferred from context.

The critic loss and the KL(q(z | c) || N(0, I)) term train the context encoder; the actor sees
z with its gradient stopped (``embed_batch``, given to the shared ``soft_ac.update``).

One ``train_step`` is one reference iteration:

1. COLLECT on ``collect_tasks`` tasks of the fixed training pool (``collection``): the task's
   context buffer is emptied, then prior-z and posterior-z episodes fill the buffers.
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

from functools import partial

import jax
import jax.numpy as jnp

from metajax import distributed, replay, rollout
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution
from metajax.learners import representation, soft_ac
from metajax.learners.base import Learner
from metajax.learners.pearl import collection, latent
from metajax.learners.pearl.config import Config, OptStates, Params, Setup, State, make_setup


def init(setup: Setup, key: jax.Array) -> State:
    """Parameters, and every pool task's buffers filled with ``initial_steps`` prior-z steps."""
    config, tasks = setup.config, setup.tasks
    key_pool, key_actor, key_critic, key_encoder, key_collect = jax.random.split(key, 5)
    if tasks.num_train_tasks is not None:
        pool = tasks.train_tasks()
    else:
        pool = tasks.sample(key_pool, setup.pool_size)
    input_dim = setup.obs_dim + config.latent_size
    ac_params, ac_opt = soft_ac.init(
        setup.ac, key_actor, key_critic, input_dim, config.init_temperature
    )
    encoder_params = setup.encoder.init(key_encoder, jnp.zeros((1, setup.context_dim)))
    params = Params(encoder=encoder_params, **ac_params._asdict())
    opt = OptStates(encoder=setup.encoder_opt.init(encoder_params), **ac_opt._asdict())
    example = replay.experience_example(setup.obs_dim, setup.ac.action_dim)
    rl_buf = replay.init(example, setup.pool_size, config.rl_capacity)
    ctx_buf = replay.init(example, setup.pool_size, setup.context_capacity)
    # INITIAL COLLECTION on every pool task with the initial policy and z ~ N(0, I)
    keys = jax.random.split(key_collect, setup.pool_size)
    episodes = config.initial_steps // setup.env.horizon
    rl_buf, ctx_buf, _, _ = collection.collect(
        setup, params, rl_buf, ctx_buf, pool, keys, episodes, 0
    )
    return State(params, opt, rl_buf, ctx_buf, pool, jnp.int32(0))


def embed_batch(
    setup: Setup, context, z_noise: jax.Array, encoder_params, batch: replay.Experience
) -> soft_ac.Inputs:
    """The networks' inputs ``concat(obs, z)`` with z ~ q(z | context) per task, and the KL loss.

    Q(s, z, a) in the critic loss sees z itself (the critic loss trains q(z | c)); the actor
    and the targets see ``stop_gradient(z)``. batch ``[b, N, ...]``, context ``[b, C, ...]``.
    """
    config = setup.config
    stats = latent.encode(setup.encoder, encoder_params, context, config.context_next_obs)
    mean, var = latent.posterior(stats)  # [b, L]
    z = latent.sample(mean, var, z_noise)  # reparameterized
    n = batch.reward.shape[1]
    z_n = jnp.broadcast_to(z[:, None], (z.shape[0], n, config.latent_size))
    z_fixed = jax.lax.stop_gradient(z_n)
    kl = latent.kl_to_standard_normal(mean, var)  # [b]
    # the reference sums the KL over the meta-batch: num_tasks * (mean over tasks)
    kl_loss = config.kl_weight * config.num_tasks * jnp.mean(kl)
    return soft_ac.Inputs(
        obs=jnp.concatenate([batch.obs, z_n], -1),
        next_obs=jnp.concatenate([batch.next_obs, z_fixed], -1),
        actor_obs=jnp.concatenate([batch.obs, z_fixed], -1),
        loss=kl_loss,
        metrics={"kl": jnp.mean(kl), "z_var": jnp.mean(var)},
    )


def sample_batch(setup: Setup, rl_buffer, ctx_buffer, key: jax.Array, axis_name):
    """RL batch ``[b, N, ...]`` and context ``[b, C, ...]`` of this shard's b stratified task
    slots, and the noise (z [b, L], next action [b, N, A], new action [b, N, A])."""
    config = setup.config
    key_tasks, key_rl, key_ctx, key_noise = jax.random.split(key, 4)
    b = config.num_tasks
    slots = collection.stratified_tasks(jax.random.split(key_tasks, b), setup.pool_size)
    slots, rl_keys, ctx_keys, noise_keys = distributed.local_slice(
        (
            slots,
            jax.random.split(key_rl, b),
            jax.random.split(key_ctx, b),
            jax.random.split(key_noise, b),
        ),
        axis_name,
    )
    slots = slots - collection.shard_offset(setup, axis_name)
    batch = replay.sample_at(rl_buffer, slots, rl_keys, config.batch_size)
    context = replay.sample_at(ctx_buffer, slots, ctx_keys, config.context_batch_size)

    def draw(k):
        k1, k2, k3 = jax.random.split(k, 3)
        shape = (config.batch_size, setup.ac.action_dim)
        return (
            jax.random.normal(k1, (config.latent_size,)),
            jax.random.normal(k2, shape),
            jax.random.normal(k3, shape),
        )

    return batch, context, jax.vmap(draw)(noise_keys)


def update(setup: Setup, rl_buffer, ctx_buffer, axis_name, carry, key: jax.Array):
    """One gradient step: the soft actor-critic update with z from the encoder, then the
    encoder's own step (a ``lax.scan`` body over ``(params, opt)``)."""
    params, opt = carry
    batch, context, (z_noise, next_noise, new_noise) = sample_batch(
        setup, rl_buffer, ctx_buffer, key, axis_name
    )
    embed = partial(embed_batch, setup, context, z_noise)
    new_params, opt, metrics, encoder_grads = soft_ac.update(
        setup.ac, params, opt, batch, (next_noise, new_noise), axis_name, embed, params.encoder
    )
    encoder, encoder_state = soft_ac.apply_adam(
        setup.encoder_opt, encoder_grads, opt.encoder, params.encoder
    )
    return (new_params._replace(encoder=encoder), opt._replace(encoder=encoder_state)), metrics


def train_step(setup: Setup, state: State, key: jax.Array, *, axis_name: str | None = None):
    """One reference iteration: collect on ``collect_tasks`` tasks, then ``gradient_steps``
    updates."""
    key_collect, key_grad = jax.random.split(key)
    rl_buffer, ctx_buffer, prior_return, posterior_return = collection.collect_on_pool(
        setup, state, key_collect, axis_name
    )
    (params, opt), metrics = jax.lax.scan(
        partial(update, setup, rl_buffer, ctx_buffer, axis_name),
        (state.params, state.opt),
        jax.random.split(key_grad, setup.config.gradient_steps),
    )
    metrics = {k: jnp.mean(v) for k, v in metrics.items()}
    metrics["prior_return"] = prior_return
    metrics["posterior_return"] = posterior_return
    metrics = distributed.pmean(metrics, axis_name)
    new_state = State(params, opt, rl_buffer, ctx_buffer, state.pool, state.step + 1)
    return new_state, metrics


def eval_episode(setup: Setup, params: Params, tasks: EnvParams, keys, stats, k):
    """Episode ``k`` on each task with z from ``stats``; the stats grown by its first episode
    (a ``lax.scan`` body)."""
    ep_keys = rollout.fold_in_each(keys, k)
    mean, var = latent.posterior(stats)  # the prior while no context is seen
    noise = soft_ac.normal_per_env(rollout.fold_in_each(ep_keys, 7), (setup.config.latent_size,))
    z = latent.sample(mean, var, noise)
    traj = collection.run_episode(setup, params.actor, tasks, z, ep_keys, deterministic=True)
    done = traj.done.astype(jnp.int32)
    first_episode = (jnp.cumsum(done, axis=0) - done) == 0  # [H, n]
    items = soft_ac.replay_items(traj)  # [n, H, ...]
    factors = latent.encode(
        setup.encoder, params.encoder, items, setup.config.context_next_obs, first_episode.T
    )
    return latent.combine(stats, factors), rollout.episode_returns(traj, 1)[:, 0]


def evaluate(setup: Setup, state: State, key: jax.Array, eval_tasks: EnvParams) -> jax.Array:
    """Return of episode k = 1..K on each task: ``[num_tasks, K]``.

    Episode k acts (deterministically) with z ~ q(z | c), c = the transitions of episodes
    1..k-1 of the same task (k = 1: z ~ N(0, I)), each up to its first done. Returns and
    context use the env's own reward, whatever ``rl_reward`` is.
    """
    n = jax.tree.leaves(eval_tasks)[0].shape[0]
    keys = jax.random.split(key, n)
    size = setup.config.latent_size
    empty = latent.GaussianStats(jnp.zeros((n, size)), jnp.zeros((n, size)))
    episode = partial(eval_episode, setup, state.params, eval_tasks, keys)
    _, returns = jax.lax.scan(episode, empty, jnp.arange(setup.config.eval_episodes))
    return returns.T


def state_partition(state: State, axis_name: str) -> State:
    """The per-task buffers and the pool sharded over ``axis_name``; the rest replicated."""
    return soft_ac.state_partition(state, axis_name)


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """PEARL on the task distribution ``tasks`` of ``env``: init, train_step, evaluate."""
    config.validate(env)
    setup = make_setup(config, env, tasks)
    steps = config.prior_steps + config.posterior_context_steps + config.posterior_steps
    return Learner(
        name="pearl",
        init=partial(init, setup),
        evaluate=partial(evaluate, setup),
        adaptation_unit="episode",
        env_steps_per_update=config.collect_tasks * steps,
        make_train_step=lambda axis_name: partial(train_step, setup, axis_name=axis_name),
        return_metric="posterior_return",
        state_partition=state_partition,
        represent=partial(represent, setup),
    )


def represent_episode(setup: Setup, params: Params, tasks: EnvParams, keys, stats, k):
    """``eval_episode``'s episode k, with q(z | c) after each of its transitions: the stats
    grown by the episode, and ``(mean, var)`` [n, H, L], the trajectory [H, n] and its mask."""
    ep_keys = rollout.fold_in_each(keys, k)
    mean, var = latent.posterior(stats)
    noise = soft_ac.normal_per_env(rollout.fold_in_each(ep_keys, 7), (setup.config.latent_size,))
    traj = collection.run_episode(
        setup, params.actor, tasks, latent.sample(mean, var, noise), ep_keys, deterministic=True
    )
    done = traj.done.astype(jnp.int32)
    first_episode = (jnp.cumsum(done, axis=0) - done) == 0  # [H, n]
    items = soft_ac.replay_items(traj)  # [n, H, ...]
    features = latent.context_features(items, setup.config.context_next_obs)
    factor_mean, factor_var = setup.encoder.apply(params.encoder, features)  # [n, H, L]
    weight = first_episode.T[..., None].astype(factor_mean.dtype)
    running = latent.GaussianStats(  # the stats after each transition
        stats.precision[:, None] + jnp.cumsum(weight / factor_var, axis=1),
        stats.scaled_mean[:, None] + jnp.cumsum(weight * factor_mean / factor_var, axis=1),
    )
    grown = latent.combine(
        stats, latent.factor_stats(factor_mean, factor_var, first_episode.T)
    )  # as eval_episode
    return grown, (latent.posterior(running), traj, first_episode)


def represent(setup: Setup, state: State, key: jax.Array, tasks: EnvParams):
    """q(z | c) over ``evaluate``'s episodes: row s is the posterior's mean and log variance
    after the first s context transitions (row 0: the prior N(0, I)); ``[n, K H + 1, 2 L]``."""
    n = jax.tree.leaves(tasks)[0].shape[0]
    size, episodes = setup.config.latent_size, setup.config.eval_episodes
    empty = latent.GaussianStats(jnp.zeros((n, size)), jnp.zeros((n, size)))
    episode = partial(represent_episode, setup, state.params, tasks, jax.random.split(key, n))
    _, ((mean, var), traj, mask) = jax.lax.scan(episode, empty, jnp.arange(episodes))
    rows = jnp.concatenate([jnp.moveaxis(mean, 0, 1), jnp.log(jnp.moveaxis(var, 0, 1))], -1)
    rows = rows.reshape(n, -1, 2 * size)  # [n, K H, 2 L]: after transition s
    prior = jnp.concatenate([jnp.zeros((n, 1, size)), jnp.zeros((n, 1, size))], -1)
    history = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), traj)  # [K H, n, ...]
    num_rows = rows.shape[1] + 1
    return representation.Representation(
        features=jnp.concatenate([prior, rows], axis=1),
        valid=jnp.ones((n, num_rows), bool),
        seen=jnp.arange(num_rows),
        unit=jnp.broadcast_to(jnp.arange(num_rows) // setup.env.horizon, (n, num_rows)),
        transitions=representation.strip_extras(history),
        mask=mask.reshape(-1, n),
    )
