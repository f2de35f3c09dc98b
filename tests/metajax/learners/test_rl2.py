"""RL²: learns a small bandit, sharded == single device, every memory core, bad config."""

import jax
import numpy as np
import pytest

import metajax.envs as envs
from metajax import networks
from metajax.errors import ConfigError
from metajax.learners import rl2
from tests.metajax.learner_checks import check_sharded_matches_single
from tests.metajax.test_cli import assert_one_line_error, metajax

TINY_CORE = {"core_size": 8, "core_heads": 2, "core_slots": 4, "core_slot_size": 4}


def test_rl2_learns_two_armed_bandit_above_random():
    env, tasks = envs.make("bernoulli-bandit", arms=2)
    config = rl2.Config(num_tasks=256, episodes_per_trial=10, core_size=64, hidden_sizes=(64,))
    learner = rl2.make_learner(config, env, tasks)
    state = learner.init(jax.random.key(0))
    step = jax.jit(learner.train_step)
    for i in range(80):
        state, metrics = step(state, jax.random.key(i + 1))
    returns = np.asarray(
        jax.jit(learner.evaluate)(state, jax.random.key(7), tasks.test_tasks(1000))
    )
    assert returns.shape == (1000, 10)
    total = returns.sum(axis=1).mean()
    # random play earns 5.0 per 10-pull trial; always pulling the best arm earns ~6.7
    assert total > 5.5, total
    # it adapts within the trial: later pulls earn more than the first
    assert returns[:, 5:].mean() > returns[:, 0].mean() + 0.05


def test_rl2_sharded_step_matches_single_device():
    options = {
        "num_tasks": 16,
        "num_minibatches": 1,
        "core_size": 16,
        "hidden_sizes": [16],
        "update_epochs": 2,
        "episodes_per_trial": 3,
    }
    result = check_sharded_matches_single("rl2", "tabular-mdp", options, {"num_states": 4})
    assert result["ok"]


def test_rl2_lstm_core_on_tabular_mdp_runs_and_masks_nothing():
    env, tasks = envs.make("tabular-mdp", num_states=4, num_actions=3, horizon=5)
    config = rl2.Config(
        num_tasks=8,
        episodes_per_trial=2,
        core="lstm",
        core_size=16,
        hidden_sizes=(16,),
        num_minibatches=2,
    )
    learner = rl2.make_learner(config, env, tasks)
    state = learner.init(jax.random.key(0))
    state, metrics = jax.jit(learner.train_step)(state, jax.random.key(1))
    assert float(metrics["env_steps"]) == 8 * 2 * 5
    assert np.isfinite(float(metrics["policy_loss"]))
    assert learner.env_steps_per_update == 8 * 10


@pytest.mark.parametrize(
    "options, extra_params",
    [
        # three more inputs (trial, episodes and episode fractions) into the first 16-unit layer
        ({"time_inputs": True}, 3 * 16),
        # the 4-state one-hot the last action was taken in, into the same layer
        ({"transition_inputs": True}, 4 * 16),
        # a 12-unit read-out over [core output 16, embedding 16] before the heads (3 logits
        # and a value now read 12 units instead of 16)
        ({"head_sizes": (12,)}, (32 + 1) * 12 + (12 - 16) * (3 + 1)),
    ],
)
def test_input_and_head_options_reach_the_network_and_train(options, extra_params):
    env, tasks = envs.make("tabular-mdp", num_states=4, num_actions=3, horizon=5)
    base = dict(num_tasks=8, episodes_per_trial=2, core_size=16, hidden_sizes=(16,))
    sizes = {}
    for name, extra in (("plain", {}), ("option", options)):
        config = rl2.Config(**base, num_minibatches=2, **extra)
        learner = rl2.make_learner(config, env, tasks)
        state = learner.init(jax.random.key(0))
        sizes[name] = sum(leaf.size for leaf in jax.tree.leaves(state.params))
        state, metrics = jax.jit(learner.train_step)(state, jax.random.key(1))
        assert np.isfinite(float(metrics["policy_loss"]))
    assert sizes["option"] - sizes["plain"] == extra_params


@pytest.mark.parametrize(
    "options, message",
    [
        ({"num_tasks": 0}, "num_tasks"),
        ({"num_tasks": 10, "num_minibatches": 4}, "divisible"),
        ({"core": "mamba"}, "unknown memory core 'mamba'"),
        ({"core": "transformer", "core_window": 0}, "window must be at least 1"),
        ({"core": "memory", "core_slots": 0}, "slots must be at least 1"),
        ({"core": "transformer", "core_size": 12, "core_heads": 5}, "must divide"),
        (
            {"core": "transformer", "episodes_per_trial": 600, "core_max_len": 512},
            "longer than the transformer's max_len",
        ),
        ({"gamma": 1.5}, "gamma"),
        ({"lr_decay_updates": -1}, "lr_decay_updates must be 0"),
    ],
)
def test_rl2_bad_config_is_one_clear_error(options, message):
    env, tasks = envs.make("bernoulli-bandit")
    with pytest.raises(ConfigError, match=message):
        rl2.make_learner(rl2.Config(**options), env, tasks).init(jax.random.key(0))


def test_lr_decay_falls_linearly_to_zero_over_the_updates():
    # every Adam step on a constant gradient moves each weight by the learning rate, so the
    # step sizes read off the schedule: 2 updates of 2 epochs x 1 minibatch = 4 steps to 0
    config = rl2.Config(learning_rate=1e-2, lr_decay_updates=2, update_epochs=2, num_minibatches=1)
    optimizer = rl2.make_optimizer(config)
    params = {"w": jax.numpy.zeros(3)}
    state = optimizer.init(params)
    steps = []
    for _ in range(6):
        updates, state = optimizer.update({"w": jax.numpy.ones(3)}, state, params)
        steps.append(-float(updates["w"][0]))
    np.testing.assert_allclose(steps, [1e-2, 7.5e-3, 5e-3, 2.5e-3, 0.0, 0.0], rtol=1e-4, atol=1e-9)
    constant = rl2.make_optimizer(rl2.Config(learning_rate=1e-2))
    updates, _ = constant.update({"w": jax.numpy.ones(3)}, constant.init(params), params)
    np.testing.assert_allclose(-updates["w"], 1e-2, rtol=1e-4)


def test_act_runs_the_policy_with_memory():
    env, tasks = envs.make("bernoulli-bandit", arms=3)
    learner = rl2.make_learner(
        rl2.Config(num_tasks=4, core_size=8, hidden_sizes=(8,), num_minibatches=1), env, tasks
    )
    state = learner.init(jax.random.key(0))
    obs = np.zeros((4, 1 + 3 + 2), np.float32)
    keys = jax.random.split(jax.random.key(1), 4)
    carry, action, extras = learner.act(state, None, obs, np.ones(4, bool), keys)
    assert action.shape == (4,) and set(extras) == {"log_prob", "value"}
    carry2, _, _ = learner.act(state, carry, obs + 1, np.zeros(4, bool), keys)
    assert not np.allclose(np.asarray(carry), np.asarray(carry2))


def test_reward_scale_changes_the_losses_not_the_reported_return():
    env, tasks = envs.make("tabular-mdp", num_states=3, num_actions=2, horizon=3)
    metrics = {}
    for scale in (1.0, 0.1):
        config = rl2.Config(
            num_tasks=4,
            episodes_per_trial=2,
            core_size=8,
            hidden_sizes=(8,),
            num_minibatches=1,
            update_epochs=1,
            reward_scale=scale,
        )
        learner = rl2.make_learner(config, env, tasks)
        _, metrics[scale] = jax.jit(learner.train_step)(
            learner.init(jax.random.key(0)), jax.random.key(1)
        )
    assert float(metrics[1.0]["trial_return"]) == float(metrics[0.1]["trial_return"])
    assert float(metrics[0.1]["value_loss"]) < float(metrics[1.0]["value_loss"])


def test_trial_mask_by_hand():
    # one env, the trial ends at t = 1: steps 0 and 1 count, 2 and 3 belong to a second trial
    done = np.array([[False], [True], [False], [True]])
    np.testing.assert_array_equal(rl2.trial_mask(done)[:, 0], [True, True, False, False])


def test_loss_at_the_collecting_params_has_no_policy_change():
    # at the parameters that collected the trials the ratio is 1 everywhere, so approx_kl is 0
    # and the surrogate is -mean(A) = 0 (advantages are standardized over the masked steps)
    env, tasks = envs.make("tabular-mdp", num_states=3, num_actions=2, horizon=3)
    config = rl2.Config(num_tasks=4, episodes_per_trial=2, core_size=8, hidden_sizes=(8,))
    setup = rl2.make_setup(config, env, tasks)
    state = rl2.init(setup, jax.random.key(0))
    task_batch = tasks.sample(jax.random.key(1), 4)
    traj, mask = rl2.run_trials(
        setup, state.params, task_batch, jax.random.split(jax.random.key(2), 4)
    )
    assert traj.reward.shape == (2 * 3, 4) and bool(mask.all())
    data = rl2.trial_data(setup, traj, mask, axis_name=None)
    total, info = jax.jit(rl2.loss, static_argnums=0)(setup, state.params, data)
    np.testing.assert_allclose(float(info["approx_kl"]), 0.0, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(float(info["policy_loss"]), 0.0, atol=1e-5)
    assert np.isfinite(float(total))


@pytest.mark.parametrize("core", ["transformer", "lru", "memory"])
def test_rl2_with_new_cores_runs_two_steps_on_a_bandit(core):
    env, tasks = envs.make("bernoulli-bandit", arms=3)
    config = rl2.Config(
        num_tasks=8,
        episodes_per_trial=6,
        core=core,
        hidden_sizes=(8,),
        num_minibatches=2,
        update_epochs=1,
        **TINY_CORE,
    )
    learner = rl2.make_learner(config, env, tasks)
    state = learner.init(jax.random.key(0))
    step = jax.jit(learner.train_step)
    for i in range(2):
        state, metrics = step(state, jax.random.key(i + 1))
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    assert float(metrics["env_steps"]) == 8 * 6
    returns = jax.jit(learner.evaluate)(state, jax.random.key(9), tasks.test_tasks(4))
    assert returns.shape == (4, 6)


@pytest.mark.parametrize("core", ["gru", "transformer", "lru", "memory"])
def test_acting_in_step_mode_equals_the_loss_in_sequence_mode(core):
    # the log-probs and values the policy recorded while acting (step mode, one step at a time)
    # are what the loss recomputes over the whole trial (sequence mode): the PPO ratio is 1
    env, tasks = envs.make("tabular-mdp", num_states=3, num_actions=2, horizon=4)
    config = rl2.Config(
        num_tasks=4,
        episodes_per_trial=3,
        core=core,
        hidden_sizes=(8,),
        core_layers=2,
        core_gate=core == "transformer",
        **TINY_CORE,
    )
    setup = rl2.make_setup(config, env, tasks)
    state = rl2.init(setup, jax.random.key(0))
    keys = jax.random.split(jax.random.key(2), 4)
    traj, mask = rl2.run_trials(setup, state.params, tasks.sample(jax.random.key(1), 4), keys)
    data = rl2.trial_data(setup, traj, mask, axis_name=None)
    dist, value = jax.jit(rl2.sequence_outputs, static_argnums=0)(
        setup, state.params, data.obs, data.first
    )
    log_prob = networks.log_prob(dist, data.action, True)
    np.testing.assert_allclose(log_prob, traj.extras["log_prob"], atol=1e-5)
    np.testing.assert_allclose(value, traj.extras["value"], atol=1e-5)
    _, info = jax.jit(rl2.loss, static_argnums=0)(setup, state.params, data)
    np.testing.assert_allclose(float(info["approx_kl"]), 0.0, rtol=1e-4, atol=1e-9)


def test_the_transformer_cache_is_capped_at_the_trial_length():
    config = rl2.Config(core="transformer", core_window=64, episodes_per_trial=10)
    assert config.core_config(10).window == 10 and config.core_config(10).max_len == 10
    assert config.core_config().max_len == 512
    # the LRU's associative scan only where it pays (accelerators), unless asked for
    assert config.core_config().parallel == (jax.default_backend() != "cpu")
    assert rl2.Config(core_parallel=True).core_config().parallel


def test_rl2_lru_sharded_step_matches_single_device():
    options = {
        "num_tasks": 16,
        "num_minibatches": 1,
        "core": "lru",
        "core_size": 8,
        "hidden_sizes": [8],
        "update_epochs": 2,
        "episodes_per_trial": 3,
    }
    result = check_sharded_matches_single("rl2", "tabular-mdp", options, {"num_states": 4})
    assert result["ok"]


def test_cli_bad_core_is_one_line_exit_2(tmp_path):
    result = metajax("train", "rl2", "--core", "mamba", "--run-dir", str(tmp_path / "r"))
    assert_one_line_error(result, "unknown memory core 'mamba'")


def test_cli_help_lists_the_core_options():
    result = metajax("train", "rl2", "--help")
    assert result.returncode == 0
    for flag in ("--core ", "--core-window", "--core-heads", "--core-slots", "--core-parallel"):
        assert flag in result.stdout, flag
