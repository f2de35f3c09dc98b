"""Brax locomotion families: task rewards, task splits, per-task physics.

Tests that compile brax physics are few: one fast test compiles a half-cheetah step at batch 2;
the rest that step physics are marked slow (each brax jit takes 10-40 s on 2 CPU cores).
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax.envs as envs
from metajax.envs.adapters.brax import (
    DynamicsTask,
    dynamics_shapes,
    make_brax_env,
    make_brax_task_family,
    scaled_system,
)
from metajax.envs.locomotion import VelocityTask
from metajax.envs.locomotion_params import rand_param_sampler
from metajax.errors import ConfigError


def test_importing_the_registry_does_not_import_brax():
    code = "import sys, metajax.envs; sys.exit('brax' in sys.modules or 'mujoco' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert "cheetah-vel" in envs.names() and "brax-ant" in envs.names()
    assert envs.options("cheetah-vel")["horizon"] == 200


def test_cheetah_vel_reward_is_the_task_formula_and_depends_on_the_task():
    env, _ = envs.make("cheetah-vel", horizon=5)
    targets = jnp.array([0.3, 1.7])
    params = VelocityTask(target_velocity=targets)
    # the same start state and action for both tasks: identical physics, different rewards;
    # actions beyond [-1, 1] must be clipped before both the physics and the control cost
    keys = jnp.stack([jax.random.key(3)] * 2)
    action = jnp.broadcast_to(jnp.linspace(-1.5, 1.5, env.action_size), (2, env.action_size))

    @jax.jit
    def one_step(keys, params, action):
        _, before = jax.vmap(env.reset_env)(keys, params)
        _, after, reward, terminated, _ = jax.vmap(env.step_env)(keys, before, action, params)
        return before, after, reward, terminated

    before, after, reward, terminated = one_step(keys, params, action)
    torso_x = lambda state: state.brax.pipeline_state.x.pos[:, 0, 0]  # noqa: E731
    velocity = (torso_x(after) - torso_x(before)) / env.dt
    control_cost = 0.05 * jnp.sum(jnp.clip(action, -1, 1) ** 2, axis=-1)
    expected = -jnp.abs(velocity - targets) - control_cost

    assert float(jnp.abs(velocity[0])) > 1e-3, "the cheetah did not move; the check is vacuous"
    np.testing.assert_allclose(velocity[0], velocity[1], rtol=1e-6)
    np.testing.assert_allclose(reward, expected, rtol=1e-5, atol=1e-5)
    assert abs(float(reward[0] - reward[1])) > 0.1
    assert not bool(jnp.any(terminated))
    assert reward.dtype == jnp.float32
    assert after.time.tolist() == [1, 1]


def test_cheetah_vel_task_splits():
    _, tasks = envs.make("cheetah-vel", num_train_tasks=100)
    train = tasks.train_tasks().target_velocity
    test = tasks.test_tasks().target_velocity
    ood = tasks.ood_test_tasks().target_velocity
    assert train.shape == (100,) and test.shape == (30,)
    assert bool(jnp.all((train >= 0) & (train <= 2))) and bool(jnp.all((test >= 0) & (test <= 2)))
    assert bool(jnp.all((ood >= 2) & (ood <= 3)))
    assert len(np.unique(np.asarray(test))) == 30
    assert not np.isin(np.asarray(test), np.asarray(train)).any()


def test_cheetah_dir_has_exactly_two_tasks_in_every_split():
    _, tasks = envs.make("cheetah-dir")
    assert sorted(tasks.test_tasks().direction.tolist()) == [-1.0, 1.0]
    assert sorted(tasks.train_tasks().direction.tolist()) == [-1.0, 1.0]
    drawn = tasks.sample(jax.random.key(0), 64).direction
    assert set(drawn.tolist()) == {-1.0, 1.0}


def test_ant_goal_goals_lie_in_the_disc_and_ood_goals_outside():
    _, tasks = envs.make("ant-goal")
    radius = jnp.linalg.norm(tasks.train_tasks().goal, axis=-1)
    ood_radius = jnp.linalg.norm(tasks.ood_test_tasks().goal, axis=-1)
    assert tasks.train_tasks().goal.shape == (150, 2) and tasks.test_tasks().goal.shape == (30, 2)
    assert float(radius.max()) <= 3.0 + 1e-5 and float(radius.max()) > 2.5
    assert bool(jnp.all((ood_radius >= 3.0 - 1e-5) & (ood_radius <= 4.0 + 1e-5)))


def test_rand_param_scales_follow_the_reference_ranges():
    system = make_brax_env("walker2d").sys
    scales = jax.vmap(rand_param_sampler(system))(jax.random.split(jax.random.key(0), 256))
    shapes = dynamics_shapes(system)
    assert scales.mass.shape == (256, *shapes.mass.shape)
    for field, base in [("mass", 1.5), ("inertia", 1.5), ("damping", 1.3), ("friction", 1.5)]:
        log_scale = jnp.log(getattr(scales, field)) / jnp.log(base)
        assert float(log_scale.min()) >= -3 - 1e-4 and float(log_scale.max()) <= 3 + 1e-4
        assert float(log_scale.min()) < -2.5 and float(log_scale.max()) > 2.5, field


def test_scaled_system_scales_brax_and_mujoco_fields():
    system = make_brax_env("hopper").sys
    ones = dynamics_shapes(system)
    scales = DynamicsTask(
        mass=ones.mass * 2.0,
        inertia=ones.inertia * 3.0,
        damping=ones.damping * 0.5,
        friction=ones.friction * 0.25,
    )
    scaled = scaled_system(system, scales)
    np.testing.assert_allclose(scaled.link.inertia.mass, 2 * system.link.inertia.mass)
    np.testing.assert_allclose(scaled.body_mass, 2 * system.body_mass)
    np.testing.assert_allclose(scaled.link.inertia.i, 3 * system.link.inertia.i, rtol=1e-6)
    np.testing.assert_allclose(scaled.body_inertia, 3 * system.body_inertia, rtol=1e-6)
    np.testing.assert_allclose(scaled.dof.damping, 0.5 * system.dof.damping)
    np.testing.assert_allclose(scaled.geom_friction, 0.25 * system.geom_friction)


def test_brax_adapter_randomizes_only_what_it_is_told():
    env, tasks = make_brax_task_family("hopper", randomize={"mass": (0.5, 2.0)})
    task = tasks.sample(jax.random.key(0), 32)
    assert float(task.mass.min()) >= 0.5 and float(task.mass.max()) <= 2.0
    assert float(task.mass.std()) > 0.1
    for field in ("inertia", "damping", "friction"):
        np.testing.assert_array_equal(getattr(task, field), 1.0)
    assert env.action_space().shape == (env.brax_env.action_size,)


@pytest.mark.parametrize(
    "randomize",
    [{"gravity": (0.5, 1.5)}, {"mass": (0.0, 1.0)}, {"mass": (2.0, 1.0)}],
)
def test_brax_adapter_rejects_bad_specs(randomize):
    with pytest.raises(ValueError, match="randomize"):
        make_brax_task_family("hopper", randomize=randomize)


def test_bad_options_raise_one_line_config_errors():
    with pytest.raises(ConfigError, match="backend"):
        envs.make("cheetah-vel", backend="warp")
    with pytest.raises(ConfigError, match="horizon"):
        envs.make("walker-params", horizon=0)


@pytest.mark.slow
def test_random_dynamics_change_the_physics_per_task():
    env, tasks = envs.make("walker-params", horizon=20)
    params = tasks.train_tasks()
    params = jax.tree.map(lambda x: x[:2], params)
    keys = jnp.stack([jax.random.key(0)] * 2)
    actions = jax.random.uniform(jax.random.key(1), (20, env.action_size), minval=-1, maxval=1)

    @jax.jit
    def run(keys, params):
        obs, state = jax.vmap(env.reset_env)(keys, params)

        def one_step(state, action):
            action = jnp.broadcast_to(action, (2, env.action_size))
            obs, state, *_ = jax.vmap(env.step_env)(keys, state, action, params)
            return state, obs

        return obs, jax.lax.scan(one_step, state, actions)[1]

    first, trajectory = run(keys, params)
    # the same start and actions: only the task's physics can make the two walkers differ
    np.testing.assert_allclose(first[0], first[1], rtol=1e-6)
    assert float(jnp.abs(trajectory[:, 0] - trajectory[:, 1]).max()) > 1e-2
    same = jax.tree.map(lambda x: jnp.stack([x[0], x[0]]), params)
    _, trajectory_same = run(keys, same)
    np.testing.assert_allclose(trajectory_same[:, 0], trajectory_same[:, 1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_brax_auto_reset_returns_to_the_cached_start_state_with_the_same_task():
    env, _ = envs.make("cheetah-vel", horizon=2)
    assert env.reuses_reset_state
    params = VelocityTask(target_velocity=jnp.array([0.3, 1.7]))
    keys = jax.random.split(jax.random.key(0), 2)
    action = jnp.broadcast_to(jnp.linspace(-0.8, 0.8, env.action_size), (2, env.action_size))

    def no_fresh_reset(*args):
        raise AssertionError("step ran a fresh brax reset")

    @jax.jit
    def run(keys, params):
        obs, state = jax.vmap(env.reset)(keys, params)
        env.reset_env = no_fresh_reset  # only reset above may reset; step must not

        def one_step(state, t):
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, t)
            out = jax.vmap(env.step)(step_keys, state, action, params)
            return out[1], out

        return obs, state, jax.lax.scan(one_step, state, jnp.arange(3))[1]

    try:
        obs, start, (next_obs, states, reward, terminated, truncated, info) = run(keys, params)
    finally:
        del env.reset_env
    assert truncated.tolist() == [[False, False], [True, True], [False, False]]
    assert not bool(jnp.any(terminated))
    # after the truncation at step 2 the state is the cached start state, time 0
    after_done = jax.tree.map(lambda x: x[1], states)
    jax.tree.map(np.testing.assert_array_equal, after_done.brax, start.brax)
    jax.tree.map(np.testing.assert_array_equal, after_done.first, start.first)
    assert after_done.time.tolist() == [0, 0]
    np.testing.assert_array_equal(next_obs[1], obs)
    assert not np.allclose(info["final_observation"][1], obs)  # the episode did move
    # the same task: the step after the reset repeats the first step exactly, rewards included
    np.testing.assert_array_equal(next_obs[2], next_obs[0])
    np.testing.assert_array_equal(reward[2], reward[0])
    assert abs(float(reward[0, 0] - reward[0, 1])) > 0.1  # and the two tasks differ
