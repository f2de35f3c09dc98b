"""TrialWrapper: RL² inputs, K episodes per trial, horizon, reset keeps the task."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment as gymnax_env
from gymnax.environments import spaces as gymnax_spaces

import metajax.envs as envs
from metajax.envs.tabular_mdp import MDPParams


def test_trial_of_k_episodes_with_rl2_inputs():
    env, _ = envs.make("tabular-mdp", num_states=2, num_actions=3, horizon=2)
    params = MDPParams(transitions=jnp.full((2, 3, 2), 0.5), reward_means=jnp.ones((2, 3)) * 7)
    trial = envs.TrialWrapper(env, episodes_per_trial=3)
    assert trial.horizon == 6
    assert trial.observation_space().shape == (2 + 3 + 2,)
    obs, state = trial.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs, [1, 0, 0, 0, 0, 0, 0])
    flags = []
    for t in range(6):
        _, state, reward, terminated, truncated, info = trial.step(
            jax.random.key(t), state, 2, params
        )
        obs = info["final_observation"]  # before the auto-reset that starts the next trial
        np.testing.assert_array_equal(obs[2:5], [0, 0, 1])  # previous action one-hot
        assert abs(float(obs[5]) - float(reward)) < 1e-6  # previous reward
        assert float(obs[6]) == float(info["episode_done"])  # previous step ended an episode
        flags.append((bool(info["episode_done"]), bool(terminated)))
        if info["episode_done"] and not terminated:
            np.testing.assert_array_equal(obs[:2], [1, 0])  # the inner env restarted in state 0
    assert flags == [(False, False), (True, False)] * 2 + [(False, False), (True, True)]


def test_time_inputs_give_the_next_steps_place_in_trial_episodes_and_episode():
    env, _ = envs.make("tabular-mdp", num_states=2, num_actions=3, horizon=2)
    params = MDPParams(transitions=jnp.full((2, 3, 2), 0.5), reward_means=jnp.ones((2, 3)))
    plain = envs.TrialWrapper(env, episodes_per_trial=3)
    trial = envs.TrialWrapper(env, episodes_per_trial=3, time_inputs=True)
    assert trial.observation_space().shape == (2 + 3 + 2 + 3,)
    obs, state = trial.reset(jax.random.key(0), params)
    plain_obs, plain_state = plain.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs[-3:], [0, 0, 0])
    seen = []
    for t in range(5):  # the sixth step ends the trial and the next obs starts a new one
        key = jax.random.key(t)
        obs, state, *_ = trial.step(key, state, 1, params)
        plain_obs, plain_state, *_ = plain.step(key, plain_state, 1, params)
        np.testing.assert_array_equal(obs[:-3], plain_obs)  # the RL² inputs are unchanged
        seen.append(np.asarray(obs[-3:]) * [6, 3, 2])  # back to steps, episodes, steps
    # (steps into the trial, episodes done, steps into the episode) at the next step
    expected = [(1, 0, 1), (2, 1, 0), (3, 1, 1), (4, 2, 0), (5, 2, 1)]
    np.testing.assert_allclose(seen, expected, atol=1e-6)


def test_transition_inputs_give_the_observation_the_last_action_was_taken_in():
    env, _ = envs.make("tabular-mdp", num_states=3, num_actions=2, horizon=2)
    stay = jnp.eye(3)[:, None, :].repeat(2, axis=1)  # action 0 stays, action 1 moves on
    move = jnp.roll(jnp.eye(3), 1, axis=1)[:, None, :].repeat(2, axis=1)
    transitions = jnp.concatenate([stay[:, :1], move[:, 1:]], axis=1)
    params = MDPParams(transitions=transitions, reward_means=jnp.ones((3, 2)))
    plain = envs.TrialWrapper(env, episodes_per_trial=2)
    trial = envs.TrialWrapper(env, episodes_per_trial=2, transition_inputs=True)
    assert trial.observation_space().shape == (3 + 2 + 2 + 3,)
    obs, state = trial.reset(jax.random.key(0), params)
    plain_obs, plain_state = plain.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs[-3:], [0, 0, 0])  # no action taken yet
    acted_in, seen = [], []
    for t, action in enumerate([1, 1, 0, 1]):  # the fourth step ends the trial
        acted_in.append(int(np.argmax(obs[:3])))
        key = jax.random.key(t)
        obs, state, *_ = trial.step(key, state, action, params)
        plain_obs, plain_state, *_ = plain.step(key, plain_state, action, params)
        np.testing.assert_array_equal(obs[:-3], plain_obs)  # the RL² inputs are unchanged
        seen.append(obs[-3:])
    # states 0 -> 1 (-> episode ends, back to 0) -> 0 -> 1; the trial's end starts a new one
    assert acted_in == [0, 1, 0, 0]
    for t in range(3):
        np.testing.assert_array_equal(seen[t], np.eye(3)[acted_in[t]])
    np.testing.assert_array_equal(seen[3], [0, 0, 0])


def test_oracle_of_a_trial_is_k_times_the_episode_oracle():
    env, tasks = envs.make("bernoulli-bandit", arms=4)
    trial = envs.TrialWrapper(env, 7)
    params = tasks.test_tasks(10)
    np.testing.assert_allclose(
        trial.oracle_episode_return(params), 7 * env.oracle_episode_return(params), rtol=1e-6
    )


@struct.dataclass
class _WalkState(envs.EnvState):
    position: jax.Array
    start: jax.Array


class _CachedStartWalk(envs.MetaEnv):
    """A 1-d random walk whose episodes restart from the start cached at ``reset``."""

    horizon = 2
    reuses_reset_state = True

    def reset_env(self, key, params):
        start = jax.random.uniform(key, ())
        return jnp.stack([start]), _WalkState(time=jnp.int32(0), position=start, start=start)

    def auto_reset(self, key, state, params):
        del key
        return jnp.stack([state.start]), state.replace(time=jnp.int32(0), position=state.start)

    def step_env(self, key, state, action, params):
        position = state.position + params
        next_state = state.replace(time=state.time + 1, position=position)
        return jnp.stack([position]), next_state, position, jnp.bool_(False), {}

    def action_space(self, params=None):
        return gymnax_spaces.Discrete(2)

    def observation_space(self, params=None):
        return gymnax_spaces.Box(-jnp.inf, jnp.inf, (1,), jnp.float32)


def test_trial_wrapper_restarts_inner_episodes_through_auto_reset():
    env = _CachedStartWalk()
    trial = envs.TrialWrapper(env, episodes_per_trial=2)
    assert trial.reuses_reset_state
    params = jnp.float32(10.0)
    obs, state = trial.reset(jax.random.key(0), params)
    start = float(obs[0])
    positions = []
    for t in range(6):  # two trials of two episodes of two steps
        obs, state, *_ = trial.step(jax.random.key(100 + t), state, 0, params)
        positions.append(float(obs[0]))
    # every inner episode and every trial restarts at the cached start, never a fresh draw
    expected = [start + 10, start] * 3
    np.testing.assert_allclose(positions, expected, rtol=1e-6)
    assert int(state.episode) == 1 and int(state.time) == 2  # 2 steps into trial 2


def test_step_is_gymnax_step_for_envs_that_reset_fresh():
    env, tasks = envs.make("nav2d", horizon=3)
    params = tasks.test_tasks(1)
    params = jax.tree.map(lambda x: x[0], params)
    assert not env.reuses_reset_state
    _, state = env.reset(jax.random.key(0), params)
    for t in range(4):  # crosses the truncation at the horizon
        key = jax.random.key(t)
        action = jnp.full((2,), 0.05)
        ours = env.step(key, state, action, params)
        theirs = gymnax_env.Environment.step(env, key, state, action, params)
        chex.assert_trees_all_equal(ours, theirs)
        state = ours[1]


def test_unit_box_actions_map_minus_one_one_onto_the_box():
    env, tasks = envs.make("point-robot-dense")  # actions in [-0.1, 0.1]^2
    unit = envs.UnitBoxActions(env)
    space = unit.action_space()
    np.testing.assert_array_equal([space.low, space.high], [-1.0, 1.0])
    params = jax.tree.map(lambda x: x[0], tasks.sample(jax.random.key(0), 1))
    _, state = unit.reset(jax.random.key(1), params)
    _, raw_state = env.reset(jax.random.key(1), params)
    for action, moved in [([1.0, -1.0], [0.1, -0.1]), ([0.5, 3.0], [0.05, 0.1])]:
        _, s, *_ = unit.step(jax.random.key(2), state, jnp.asarray(action), params)
        _, r, *_ = env.step(jax.random.key(2), raw_state, jnp.asarray(moved), params)
        np.testing.assert_allclose(s.position, r.position, atol=1e-7)
    discrete, _ = envs.make("bernoulli-bandit", arms=3)
    assert envs.unit_box_actions(discrete) is discrete  # nothing to rescale
