"""VariBAD: the KL by hand, the ELBO, the belief's reset and growth, sharding, resume, learning."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metajax.envs as envs
from metajax.errors import ConfigError
from metajax.learners import varibad
from metajax.learners.varibad import buffer, vae
from metajax.learners.varibad.config import make_setup
from tests.metajax.learner_checks import check_resume_is_exact, check_sharded_matches_single

TINY = dict(
    num_tasks=8,
    episodes_per_trial=2,
    latent_size=3,
    encoder_hidden_size=16,
    state_embed_size=8,
    action_embed_size=4,
    reward_embed_size=4,
    reward_decoder_sizes=[16],
    policy_state_embed=8,
    policy_latent_embed=8,
    hidden_sizes=[16],
    vae_buffer_trials=16,
    vae_batch_trials=8,
    vae_updates=2,
    num_minibatches=1,
)


def _tuple_options(options: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _setup_and_state(env_name="point-robot-dense", **overrides):
    env, tasks = envs.make(env_name)
    config = varibad.Config(**_tuple_options({**TINY, **overrides}))
    setup = make_setup(config, env, tasks)
    return setup, varibad.init(setup, jax.random.key(0)), tasks


def _trials(setup, state, tasks, key, n=16):
    """``n`` trials of the given state's policy as a time-major ``TrialBatch``."""
    traj, mask = varibad.run_trials(
        setup, state.params, tasks.sample(key, n), jax.random.split(key, n)
    )
    return traj, buffer.trial_batch(traj, mask)


@pytest.fixture(scope="module")
def tiny():
    """A tiny setup, its initial state, tasks and 16 collected trials (compiled once)."""
    setup, state, tasks = _setup_and_state(decode_transitions=True)
    traj, batch = jax.jit(lambda key: _trials(setup, state, tasks, key))(jax.random.key(1))
    return setup, state, traj, batch


# ----------------------------------------------------------------------------- KL


def test_gaussian_kl_by_hand():
    # KL(N(1, 1) || N(0, 1)) = 0.5 * 1^2 = 0.5 ; KL(N(0, 2) || N(0, 1)) = 0.5 (2 - 1 - ln 2)
    # = 0.153426 ; KL(N(0, 1) || N(0, 2)) = 0.5 (ln 2 - 1 + 1/2) = 0.096574
    kl = vae.gaussian_kl(jnp.array([1.0]), jnp.zeros(1), jnp.zeros(1), jnp.zeros(1))
    assert float(kl) == pytest.approx(0.5, abs=1e-6)
    log2 = jnp.log(jnp.array([2.0]))
    kl = vae.gaussian_kl(jnp.zeros(1), log2, jnp.zeros(1), jnp.zeros(1))
    assert float(kl) == pytest.approx(0.153426, abs=1e-6)
    kl = vae.gaussian_kl(jnp.zeros(1), jnp.zeros(1), jnp.zeros(1), log2)
    assert float(kl) == pytest.approx(0.096574, abs=1e-6)


def test_sequential_kl_starts_from_the_standard_normal():
    # posteriors N(1, 1) then N(1, 2) (one trial, 1-d): KLs 0.5 (to N(0, 1)), then 0.153426
    means = jnp.array([[[1.0]], [[1.0]]])
    logvars = jnp.array([[[0.0]], [[float(np.log(2.0))]]])
    np.testing.assert_allclose(vae.sequential_kl(means, logvars)[:, 0], [0.5, 0.153426], atol=1e-6)


def test_reconstruction_losses_by_hand():
    # squared error: ((1 - 0)^2 + (2 - 0)^2) / 2 = 2.5 ; Gaussian NLL of 1 under N(0, e^0):
    # 0.5 (0 + 1 + ln 2 pi) = 1.418939
    assert (
        float(vae.reconstruction_loss(jnp.zeros(2), jnp.array([1.0, 2.0]), "deterministic")) == 2.5
    )
    nll = vae.reconstruction_loss(jnp.zeros(2), jnp.ones(1), "gaussian")
    assert float(nll) == pytest.approx(1.418939, abs=1e-6)


# ----------------------------------------------------------------------------- the belief


def test_encoder_resets_at_trial_starts_and_nowhere_else(tiny):
    setup, state, traj, _ = tiny
    steps = traj.obs.shape[0]  # one trial: T = K * H
    obs = jnp.concatenate([traj.obs, traj.obs[::-1]], axis=0)  # two trials back to back
    first = jnp.zeros(obs.shape[:2], bool).at[0].set(True).at[steps].set(True)
    encoder = state.params.vae["encoder"]
    along = jax.jit(partial(vae.beliefs_along, setup, encoder))
    mean, logvar = along(obs, first)
    noisy = obs.at[:steps].add(jax.random.normal(jax.random.key(2), obs[:steps].shape))
    mean2, logvar2 = along(noisy, first)
    # trial 2's beliefs do not depend on trial 1's inputs; trial 1's do
    np.testing.assert_array_equal(mean[steps:], mean2[steps:])
    np.testing.assert_array_equal(logvar[steps:], logvar2[steps:])
    assert not np.allclose(mean[1:steps], mean2[1:steps])
    # each trial starts from the prior, and the belief moves at every step inside a trial
    np.testing.assert_allclose(mean[0], mean[steps], atol=1e-6)
    assert np.all(np.abs(np.diff(np.asarray(mean[:steps]), axis=0)).max(axis=-1) > 0)
    # the episode boundary inside a trial (step H) is not a reset: beliefs there differ
    horizon = setup.env.env.horizon
    assert not np.allclose(mean[horizon], mean[0])


def test_acting_beliefs_equal_the_vae_encoding(tiny):
    # the belief the policy acted on at step t is the VAE's posterior after t transitions
    setup, state, traj, batch = tiny
    encode = jax.jit(partial(vae.encode_trials, setup))
    means, logvars = encode(state.params.vae["encoder"], batch.obs)
    np.testing.assert_allclose(traj.extras["mean"], means[:-1], atol=1e-5)
    np.testing.assert_allclose(traj.extras["logvar"], logvars[:-1], atol=1e-5)


def _train_vae(setup, params, batch, steps, lr=3e-3, fresh=None):
    """``steps`` Adam steps on the ELBO: on ``batch``, or on ``fresh(key)`` batches."""
    opt = optax.adam(lr)

    def body(carry, key):
        params, opt_state = carry
        data = batch if fresh is None else fresh(key)
        (loss, _), grads = jax.value_and_grad(partial(vae.elbo_loss, setup), has_aux=True)(
            params, data, jax.random.split(jax.random.key(0) if fresh is None else key, 16)
        )
        updates, opt_state = opt.update(grads, opt_state)
        return (optax.apply_updates(params, updates), opt_state), loss

    run = jax.jit(
        lambda p: jax.lax.scan(body, (p, opt.init(p)), jax.random.split(jax.random.key(5), steps))
    )
    (params, _), losses = run(params)
    return params, np.asarray(losses)


def test_elbo_falls_on_a_fixed_batch(tiny):
    setup, state, _, batch = tiny
    _, losses = _train_vae(setup, state.params.vae, batch, 40)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_subsampled_elbo_with_truncated_backprop_is_finite(tiny):
    setup, state, _, batch = tiny
    config = dataclasses.replace(
        setup.config, vae_subsample_elbos=5, vae_subsample_decodes=7, tbptt_steps=10
    )
    sub = dataclasses.replace(setup, config=config)
    keys = jax.random.split(jax.random.key(6), 16)
    grad_fn = jax.jit(jax.grad(partial(vae.elbo_loss, sub), has_aux=True))
    grads, info = grad_fn(state.params.vae, batch, keys)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves((grads, info)))
    # 5 posteriors x 7 steps per trial: far below the full sum over 41 x 40 terms
    _, full = jax.jit(partial(vae.elbo_loss, setup))(state.params.vae, batch, keys)
    assert 0 < float(info["reward_loss"]) < float(full["reward_loss"])


def test_reward_error_and_belief_variance_fall_as_the_context_grows():
    # after brief VAE training on random-policy trials of the dense point robot, the posterior
    # after the whole trial predicts the trial's rewards better than the prior does, and its
    # variance is smaller
    setup, state, tasks = _setup_and_state(encoder_hidden_size=32, reward_decoder_sizes=[32, 32])
    fresh = lambda key: _trials(setup, state, tasks, key, n=16)[1]
    params, losses = _train_vae(setup, state.params.vae, None, 250, fresh=fresh)
    assert losses[-20:].mean() < losses[:20].mean()
    batch = fresh(jax.random.key(99))
    means, logvars = vae.encode_trials(setup, params["encoder"], batch.obs)  # [T + 1, B, L]
    state_t, _, _ = vae.split_obs(setup, batch.obs[:-1])
    _, action, reward = vae.split_obs(setup, batch.obs[1:])

    def error(latent):  # reward MSE over the whole trial decoded from one latent per trial
        latent = jnp.broadcast_to(latent, (*reward.shape, latent.shape[-1]))
        pred = setup.reward_decoder.apply(
            params["reward_decoder"], latent, state_t, action, batch.next_state
        )[..., 0]
        return float(jnp.sum((pred - reward) ** 2 * batch.mask) / jnp.sum(batch.mask))

    steps = reward.shape[0]
    errors = [error(means[t]) for t in (0, steps // 4, steps)]
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.7 * errors[0], errors
    variances = np.asarray(jnp.mean(jnp.exp(logvars), axis=(1, 2)))
    assert variances[-1] < 0.5 * variances[0], variances[[0, -1]]


# ----------------------------------------------------------------------------- sharding, resume


def test_sharded_step_matches_single_device():
    result = check_sharded_matches_single("varibad", "point-robot-dense", TINY, steps=2)
    assert result["ok"]


def test_checkpoint_resume_is_exact(tmp_path):
    env, tasks = envs.make("point-robot-dense")
    learner = varibad.make_learner(varibad.Config(**_tuple_options(TINY)), env, tasks)
    state, restored = check_resume_is_exact(learner, tmp_path)
    # the VAE buffer really is in the checkpoint: two updates' trials, the same data
    assert int(restored.count) == 2 and bool(jnp.any(restored.buffer.mask))
    np.testing.assert_array_equal(restored.buffer.obs, state.buffer.obs)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"latent_size": 0}, "latent_size must be at least 1"),
        ({"vae_buffer_trials": 4}, "vae_buffer_trials (4) must be a multiple"),
        ({"vae_buffer_trials": 12}, "vae_buffer_trials (12) must be a multiple"),
        ({"prediction": "bernoulli"}, "unknown decoder prediction 'bernoulli'"),
        ({"num_minibatches": 3}, "divisible by num_minibatches"),
        ({"vae_subsample_elbos": 0}, "vae_subsample_elbos must be at least 1"),
    ],
)
def test_bad_config_is_one_line_config_error(options, fragment):
    env, tasks = envs.make("point-robot-dense")
    config = varibad.Config(**_tuple_options({**TINY, **options}))
    with pytest.raises(ConfigError) as error:
        varibad.make_learner(config, env, tasks)
    assert fragment in str(error.value) and "\n" not in str(error.value)


# ----------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_varibad_learns_two_armed_bandit_above_random():
    env, tasks = envs.make("bernoulli-bandit", arms=2)
    config = varibad.Config(
        num_tasks=128, episodes_per_trial=10, latent_size=2, encoder_hidden_size=32,
        hidden_sizes=(32,), policy_state_embed=8, policy_latent_embed=16,
        decoder_input_action=True,  # a bandit's reward depends on the arm, not on s'
        vae_buffer_trials=1024, vae_batch_trials=32, update_epochs=4, ent_coef=0.01,
        clip_eps=0.2, learning_rate=1e-3, gae_lambda=0.95,
    )  # fmt: skip
    learner = varibad.make_learner(config, env, tasks)
    state = jax.jit(learner.init)(jax.random.key(0))
    step = jax.jit(learner.train_step)
    for i in range(120):
        state, _ = step(state, jax.random.key(i + 1))
    returns = np.asarray(
        jax.jit(learner.evaluate)(state, jax.random.key(7), tasks.test_tasks(1000))
    )
    # random play earns 5.0 per 10-pull trial; always pulling the best arm earns ~6.7
    assert returns.sum(axis=1).mean() > 5.4, returns.sum(axis=1).mean()


def test_cli_bad_latent_size_is_one_line_exit_2(tmp_path):
    from tests.metajax.test_cli import assert_one_line_error, metajax

    args = ("train", "varibad", "--env", "point-robot-dense", "--latent-size", "0")
    result = metajax(*args, "--run-dir", str(tmp_path / "r"))
    assert_one_line_error(result, "latent_size must be at least 1")


def test_cheetah_vel_config_names_only_known_options():
    from pathlib import Path

    from metajax.runs import RunArgs, load_toml
    from metajax.train import TrainConfig

    path = Path(__file__).parents[3] / "benchmarks/configs/varibad_cheetah_vel.toml"
    sweep = load_toml(path)
    assert sweep["learner"] == "varibad"
    known = {
        f.name for cls in (varibad.Config, RunArgs, TrainConfig) for f in dataclasses.fields(cls)
    }
    assert set(sweep["base"]) <= known, set(sweep["base"]) - known
    options = {k: v for k, v in sweep["base"].items() if k in varibad.Config.__dataclass_fields__}
    config = varibad.Config(**_tuple_options(options))
    assert config.vae_buffer_trials % config.num_tasks == 0
