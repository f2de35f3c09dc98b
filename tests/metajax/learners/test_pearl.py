"""PEARL: the product-of-Gaussians posterior, the KL, task slots, sharding, resume, learning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax.envs as envs
from metajax import replay
from metajax.errors import ConfigError
from metajax.learners import pearl
from tests.metajax.learner_checks import check_resume_is_exact, check_sharded_matches_single

# ----------------------------------------------------------------------------- posterior


def test_product_of_gaussians_closed_form():
    # factors N(1, 1) and N(3, 4): precision 1 + 1/4 = 1.25 -> var 0.8,
    # mean = 0.8 * (1/1 + 3/4) = 1.4. A masked-out third factor N(100, 0.01) changes nothing.
    mean = jnp.array([[1.0], [3.0], [100.0]])
    var = jnp.array([[1.0], [4.0], [0.01]])
    got_mean, got_var = pearl.product_of_gaussians(mean, var, jnp.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(got_mean, [1.4], rtol=1e-6)
    np.testing.assert_allclose(got_var, [0.8], rtol=1e-6)
    # two equal factors N(2, 1): N(2, 0.5)
    got_mean, got_var = pearl.product_of_gaussians(jnp.full((2, 1), 2.0), jnp.ones((2, 1)))
    np.testing.assert_allclose(got_mean, [2.0])
    np.testing.assert_allclose(got_var, [0.5])


def test_product_matches_gaussian_density_product():
    # the product of densities, normalized on a grid, has the closed-form mean and variance
    key = jax.random.key(0)
    mean = jax.random.normal(key, (4, 1))
    var = jax.random.uniform(jax.random.fold_in(key, 1), (4, 1), minval=0.5, maxval=2.0)
    x = jnp.linspace(-8.0, 8.0, 40_001)
    log_density = jnp.sum(-0.5 * (x[:, None] - mean[:, 0]) ** 2 / var[:, 0], axis=1)
    density = jnp.exp(log_density - jnp.max(log_density))
    density = density / jnp.trapezoid(density, x)
    grid_mean = jnp.trapezoid(x * density, x)
    grid_var = jnp.trapezoid((x - grid_mean) ** 2 * density, x)
    got_mean, got_var = pearl.product_of_gaussians(mean, var)
    np.testing.assert_allclose(got_mean[0], grid_mean, atol=1e-4)
    np.testing.assert_allclose(got_var[0], grid_var, atol=1e-4)


def test_posterior_incremental_permutation_invariant_and_prior_when_empty():
    key = jax.random.key(1)
    mean = jax.random.normal(key, (10, 3))
    var = jax.random.uniform(jax.random.fold_in(key, 1), (10, 3), minval=0.1, maxval=2.0)
    whole = pearl.product_of_gaussians(mean, var)
    stats = pearl.combine(
        pearl.factor_stats(mean[:4], var[:4]), pearl.factor_stats(mean[4:], var[4:])
    )
    np.testing.assert_allclose(pearl.posterior(stats)[0], whole[0], rtol=1e-5)
    np.testing.assert_allclose(pearl.posterior(stats)[1], whole[1], rtol=1e-5)
    order = jax.random.permutation(jax.random.fold_in(key, 2), 10)
    shuffled = pearl.product_of_gaussians(mean[order], var[order])
    np.testing.assert_allclose(shuffled[0], whole[0], rtol=1e-5)
    empty = pearl.GaussianStats(jnp.zeros((3,)), jnp.zeros((3,)))
    prior_mean, prior_var = pearl.posterior(empty)
    np.testing.assert_array_equal(prior_mean, jnp.zeros(3))
    np.testing.assert_array_equal(prior_var, jnp.ones(3))


def test_kl_to_standard_normal_by_hand():
    # mean (1, 0), var (1, 2): 0.5 * ((1 + 1 - 1 - 0) + (2 + 0 - 1 - log 2)) = 0.653426
    got = pearl.kl_to_standard_normal(jnp.array([1.0, 0.0]), jnp.array([1.0, 2.0]))
    assert float(got) == pytest.approx(0.653426, abs=1e-6)
    assert float(pearl.kl_to_standard_normal(jnp.zeros(5), jnp.ones(5))) == 0.0


def test_stratified_tasks_stay_in_their_block():
    keys = jax.random.split(jax.random.key(3), 16)
    for pool in (80, 100, 16, 5):
        draws = np.stack(
            [pearl.stratified_tasks(jax.random.split(k, 16), pool) for k in keys[:8]]
        )  # [8, 16]
        j = np.arange(16)
        low = j * pool // 16
        high = np.maximum((j + 1) * pool // 16, low + 1)
        assert np.all((draws >= low) & (draws < high)), pool
        if pool >= 16:
            assert all(len(set(row)) == 16 for row in draws.tolist())  # distinct tasks
    # every task of a pool of 80 is drawn: slot j's block has 5 tasks, 200 draws each
    draw = jax.vmap(lambda k: pearl.stratified_tasks(jax.random.split(k, 16), 80))
    many = draw(jax.random.split(jax.random.key(4), 200))
    assert set(np.asarray(many).ravel().tolist()) == set(range(80))


def test_config_errors():
    env, tasks = envs.make("point-robot-dense")
    with pytest.raises(ConfigError, match="multiple of the horizon"):
        pearl.make_learner(pearl.Config(prior_steps=30), env, tasks)
    with pytest.raises(ConfigError, match="exceeds the training pool"):
        pearl.make_learner(pearl.Config(collect_tasks=81), env, tasks)
    bandit, bandit_tasks = envs.make("bernoulli-bandit")
    with pytest.raises(ConfigError, match="Box"):
        pearl.make_learner(pearl.Config(), bandit, bandit_tasks)


# ----------------------------------------------------------------------------- sharding, resume

TINY = dict(
    num_tasks=8,
    collect_tasks=8,
    batch_size=16,
    context_batch_size=16,
    gradient_steps=3,
    initial_steps=40,
    prior_steps=20,
    posterior_steps=20,
    rl_capacity=200,
    hidden_sizes=[32, 32],
    encoder_hidden_sizes=[16],
)


@pytest.mark.parametrize(
    "env, options",
    [
        ("point-robot-dense", TINY),
        ("point-robot-sparse", {**TINY, "rl_reward": "dense", "posterior_context_steps": 20}),
    ],
)
def test_sharded_step_matches_single_device(env, options):
    result = check_sharded_matches_single("pearl", env, options, steps=2)
    assert result["ok"]


def test_checkpoint_resume_is_exact(tmp_path):
    env, tasks = envs.make("point-robot-dense")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}
    learner = pearl.make_learner(pearl.Config(**options), env, tasks)
    state, restored = check_resume_is_exact(learner, tmp_path)
    # the buffers really are in the checkpoint: both hold the same, non-empty data
    assert int(jnp.sum(restored.rl_buffer.size)) > 0
    np.testing.assert_array_equal(restored.rl_buffer.data.obs, state.rl_buffer.data.obs)


def _valid_items(buffer: replay.ReplayBuffer):
    """Per pool task, the valid items of a buffer as NumPy: a list of (reward, next_obs)."""
    reward, next_obs = np.asarray(buffer.data.reward), np.asarray(buffer.data.next_obs)
    return [(reward[i, :n], next_obs[i, :n]) for i, n in enumerate(np.asarray(buffer.size))]


@pytest.mark.parametrize("rl_reward", ["dense", "env"])
def test_rl_reward_dense_trains_sac_on_the_dense_reward(rl_reward):
    # the reference's sparse point robot: the RL buffer holds -distance, the context buffer the
    # env's sparse reward (1 - distance within 0.2, else 0); with "env" both hold the sparse one
    env, tasks = envs.make("point-robot-sparse")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}
    learner = pearl.make_learner(pearl.Config(**options, rl_reward=rl_reward), env, tasks)
    state = jax.jit(learner.init)(jax.random.key(0))
    state, metrics = jax.jit(learner.train_step)(state, jax.random.key(1))
    assert np.all(np.isfinite(jax.tree.leaves(metrics)))
    goals = np.asarray(state.pool.goal)  # [80, 2]
    sparse = lambda d: np.where(d <= 0.2, 1.0 - d, 0.0)
    rl_expected = (lambda d: -d) if rl_reward == "dense" else sparse
    for name, buffer, expected in (
        ("rl", state.rl_buffer, rl_expected),
        ("context", state.context_buffer, sparse),
    ):
        items = _valid_items(buffer)
        assert all(len(r) > 0 for r, _ in items), name
        for goal, (reward, next_obs) in zip(goals, items, strict=True):
            distance = np.linalg.norm(next_obs - goal, axis=-1)
            off_edge = np.abs(distance - 0.2) > 1e-5
            np.testing.assert_allclose(
                reward[off_edge], expected(distance)[off_edge], atol=1e-5, err_msg=name
            )


def test_rl_reward_dense_needs_the_dense_reward_in_the_info():
    pendulum, pendulum_tasks = envs.make("gymnax-pendulum")
    with pytest.raises(ConfigError, match="info\\['dense_reward'\\]") as error:
        steps = dict(initial_steps=200, prior_steps=200, posterior_steps=200)  # horizon 200
        pearl.make_learner(pearl.Config(**steps, rl_reward="dense"), pendulum, pendulum_tasks)
    assert "\n" not in str(error.value)
    env, tasks = envs.make("point-robot-sparse")
    with pytest.raises(ConfigError, match="rl_reward must be one of"):
        pearl.make_learner(pearl.Config(rl_reward="sparse"), env, tasks)
    pearl.make_learner(pearl.Config(rl_reward="dense"), env, tasks)  # the point robots have it


def test_posterior_context_steps_go_to_both_buffers():
    # initial 60 steps per pool task; a collected task's context buffer is emptied, then gets
    # 20 prior + 20 posterior-context steps (40), its RL buffer 20 + 20 + 20 (posterior_steps)
    env, tasks = envs.make("point-robot-sparse")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}
    options.update(initial_steps=60, posterior_context_steps=20)
    learner = pearl.make_learner(pearl.Config(**options), env, tasks)
    assert learner.env_steps_per_update == 8 * (20 + 20 + 20)
    state = jax.jit(learner.init)(jax.random.key(0))
    assert replay.capacity(state.context_buffer) == 60
    after, _ = jax.jit(learner.train_step)(state, jax.random.key(1))
    rl_size = np.asarray(after.rl_buffer.size)
    ctx_size = np.asarray(after.context_buffer.size)
    collected = rl_size == 120
    assert collected.sum() == 8 and set(rl_size[~collected].tolist()) == {60}
    assert np.all(ctx_size[collected] == 40) and np.all(ctx_size[~collected] == 60)
    with pytest.raises(ConfigError, match="posterior_context_steps .* multiple of the horizon"):
        pearl.make_learner(pearl.Config(posterior_context_steps=30), env, tasks)


def test_critic_loss_trains_the_encoder():
    # with kl_weight 0 only the critic loss can move the encoder (the actor sees stop_grad(z))
    env, tasks = envs.make("point-robot-dense")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY.items()}
    learner = pearl.make_learner(pearl.Config(**options, kl_weight=0.0), env, tasks)
    state = jax.jit(learner.init)(jax.random.key(0))
    after, metrics = jax.jit(learner.train_step)(state, jax.random.key(1))
    moved = jax.tree.map(
        lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params.encoder, after.params.encoder
    )
    assert min(jax.tree.leaves(moved)) > 0.0, moved
    assert float(metrics["kl"]) > 0.0  # the KL is still reported


# ----------------------------------------------------------------------------- learning

LEARN = pearl.Config(
    num_tasks=8,
    batch_size=64,
    context_batch_size=64,
    gradient_steps=100,
    collect_tasks=4,
    initial_steps=200,
    prior_steps=100,
    posterior_steps=100,
    gamma=0.9,
    kl_weight=0.01,
    auto_temperature=True,
    actor_lr=1e-3,
    critic_lr=1e-3,
    encoder_lr=1e-3,
    temperature_lr=1e-3,
    hidden_sizes=(64, 64),
    encoder_hidden_sizes=(32, 32),
)


@pytest.fixture(scope="module")
def trained():
    """PEARL after 120 iterations (12k gradient steps) on the dense point robot."""
    env, tasks = envs.make("point-robot-dense")
    learner = pearl.make_learner(LEARN, env, tasks)
    state = jax.jit(learner.init)(jax.random.key(0))
    chunk = jax.jit(lambda s, k: jax.lax.scan(learner.train_step, s, jax.random.split(k, 40)))
    for i in range(3):
        state, metrics = chunk(state, jax.random.key(100 + i))
    assert np.all(np.isfinite(jax.tree.leaves(metrics)))
    return env, tasks, learner, state


@pytest.mark.slow
def test_pearl_posterior_beats_prior_on_held_out_tasks(trained):
    env, tasks, learner, state = trained
    test = tasks.test_tasks()  # the 20 held-out tasks
    returns = jax.jit(learner.evaluate)(state, jax.random.key(7), test)  # [20, K=3]
    by_episode = np.asarray(jnp.mean(returns, axis=0))
    oracle = float(jnp.mean(env.oracle_episode_return(test)))
    # standing still returns -20, the oracle about -3.8; episode 1 acts on z from the prior,
    # episode 3 on the posterior of episodes 1-2
    assert by_episode[2] > by_episode[0] + 3.0, by_episode
    assert by_episode[2] > -12.0 and oracle > by_episode[2], (by_episode, oracle)


def prior_z_context(env, state, task_params, key, episodes: int) -> replay.Experience:
    """Transitions [n, episodes * H] of the trained policy acting on z ~ N(0, I) per episode."""
    from metajax import rollout
    from metajax.learners import soft_ac

    n = task_params.goal.shape[0]
    actor = soft_ac.TanhGaussianActor(2, LEARN.hidden_sizes)
    chunks = []
    for e in range(episodes):
        key_z, key_run = jax.random.split(jax.random.fold_in(key, e))
        z = jax.random.normal(key_z, (n, LEARN.latent_size))

        def policy(carry, obs, first, keys, z=z):
            mean, log_std = actor.apply(state.params.actor, jnp.concatenate([obs, z], -1))
            unit, _ = soft_ac.sample_tanh_gaussian(
                soft_ac.normal_per_env(keys, (2,)), mean, log_std
            )
            return carry, 0.1 * unit, {"unit_action": unit}

        keys = jax.random.split(key_run, n)
        start = rollout.reset(env, task_params, keys)
        _, traj = rollout.rollout(env, policy, start, task_params, keys, env.horizon)
        chunks.append(soft_ac.replay_items(traj))
    return jax.tree.map(lambda *x: jnp.concatenate(x, axis=1), *chunks)


def encoder_task_identification(env, tasks, state) -> dict[int, tuple[float, float]]:
    """For context sizes c: (mean goal error of the task identified from c transitions,
    mean log q_c(z*_own) - log q_c(z*_other)), where z*_i is task i's posterior mean given
    100 other transitions of task i and the identified task maximizes log q_c(z*_j)."""
    encoder = pearl.ContextEncoder(LEARN.latent_size, LEARN.encoder_hidden_sizes)
    task_params = jax.tree.map(
        lambda a, b: jnp.concatenate([a, b]), tasks.train_tasks(), tasks.test_tasks()
    )  # all 100 tasks of the family
    goals = np.asarray(task_params.goal)
    encode = lambda items: encoder.apply(
        state.params.encoder, pearl.context_features(items, LEARN.context_next_obs)
    )
    reference = encode(prior_z_context(env, state, task_params, jax.random.key(1), 5))
    z_star, _ = pearl.product_of_gaussians(*reference)  # [100, L]
    factors = encode(prior_z_context(env, state, task_params, jax.random.key(2), 1))  # 20 steps
    out = {}
    for size in (1, 5, 20):
        mean, var = pearl.product_of_gaussians(factors[0][:, :size], factors[1][:, :size])
        # log q_c,i(z*_j) up to a constant: [i, j]
        loglik = -0.5 * jnp.sum(
            (z_star[None] - mean[:, None]) ** 2 / var[:, None] + jnp.log(var[:, None]), -1
        )
        loglik = np.asarray(loglik)
        own = np.diag(loglik)
        other = (loglik.sum(1) - own) / (loglik.shape[1] - 1)
        identified = loglik.argmax(1)
        error = np.linalg.norm(goals[identified] - goals, axis=1).mean()
        out[size] = (float(error), float(np.mean(own - other)))
    return out


@pytest.mark.slow
def test_encoder_posterior_moves_toward_the_task_as_context_grows(trained):
    env, tasks, _, state = trained
    result = encoder_task_identification(env, tasks, state)
    (e1, m1), (e5, m5), (e20, m20) = result[1], result[5], result[20]
    # goals lie on a radius-1 half circle: a random pick is 0.93 away on average.
    # Measured (seed 0): errors 0.63, 0.35, 0.28; margins 1, 78, 433.
    assert e20 < e5 < e1 and e20 < 0.4, result
    assert 0 < m1 < m5 < m20, result
