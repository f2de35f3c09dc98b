"""Point navigation in the plane: MAML's 2D navigation and PEARL's (sparse) point robot.

A point starts at the origin; an action is a displacement, clipped to ``[-max_step, max_step]``
per axis; the task is the goal position. Three families share one env:

- ``nav2d`` (Finn et al. 2017, ``maml_examples/point_env_randgoal.py``): goal ~ U[-0.5, 0.5]^2,
  reward = -||p' - g|| after the move, the episode terminates when ``|p' - g| < 0.01`` on
  both axes (the reference's test, an L-inf ball), horizon 100. Out-of-distribution split:
  goals uniform on the ring ``0.5 < ||g||_inf <= 1``.
- ``point-robot-dense`` / ``point-robot-sparse`` (Rakelly et al. 2019, ``rlkit/envs/
  point_robot.py``): goal on the radius-1 half circle, angle ~ U[0, pi] (PEARL spaces 100
  angles evenly and shuffles them; we draw them i.i.d.), no termination, horizon 20, fixed
  pools of 80 training and 20 test tasks. Dense reward = -||p' - g||; sparse reward =
  ``1 - ||p' - g||`` within ``goal_radius`` (0.2, inclusive) and 0 outside, which is PEARL's
  ``sparsify_rewards(r) + 1``. Out-of-distribution split: the other half circle,
  angle ~ U[pi, 2 pi].

Neither reference clips the position, so the observation (the position) is unbounded.

Every family's ``step`` info holds ``"distance"`` (``||p' - g||``) and ``"dense_reward"``
(``-||p' - g||``, whatever the reward kind). PEARL's reference sparse point robot returns the
dense reward from ``step`` and the sparse one in ``info['sparse_reward']``: with
``sparse_rewards`` its SAC losses train on the dense reward and only the context encoder (and
the reported returns) see the sparse one. Here the reward is the family's own (sparse for
``point-robot-sparse``) and the dense one is in the info, so a learner can follow the reference
(``metajax.learners.pearl.Config.rl_reward = "dense"``).

Oracle: the policy ``a = clip(g - p, -max_step, max_step)`` moves every axis at full speed
towards the goal; it attains the smallest possible distance on every step (each axis is at
``max(|g_i| - max_step * t, 0)``), and every reward here is a non-increasing function of that
distance, so it is optimal. Its return has a closed form, ``oracle_episode_return``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from metajax.envs.core import MetaEnv, TaskDistribution, check_splits

RewardKind = Literal["dense", "sparse"]


@struct.dataclass
class GoalParams:
    """A navigation task: where the goal is."""

    goal: jax.Array  # [2] (or [tasks, 2] for a batch)


@struct.dataclass
class PointState:
    """The point's position and the step count of the episode."""

    time: jax.Array
    position: jax.Array  # [2]


class PointNavigation(MetaEnv):
    """A point moved by clipped displacements towards a per-task goal.

    Args:
        horizon: steps per episode.
        max_step: per-axis bound of one displacement.
        reward_kind: "dense" (-distance) or "sparse" (1 - distance within ``goal_radius``).
        goal_radius: radius of the sparse reward region.
        goal_tolerance: terminate when both axes are closer than this; None never terminates.
    """

    def __init__(
        self,
        horizon: int = 100,
        max_step: float = 0.1,
        reward_kind: RewardKind = "dense",
        goal_radius: float = 0.2,
        goal_tolerance: float | None = None,
    ):
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1, got {horizon}")
        if max_step <= 0:
            raise ValueError(f"max_step must be positive, got {max_step}")
        if reward_kind not in ("dense", "sparse"):
            raise ValueError(f"reward_kind must be 'dense' or 'sparse', got {reward_kind!r}")
        if goal_radius <= 0:
            raise ValueError(f"goal_radius must be positive, got {goal_radius}")
        if goal_tolerance is not None and goal_tolerance <= 0:
            raise ValueError(f"goal_tolerance must be positive or None, got {goal_tolerance}")
        self.horizon = horizon
        self.max_step = max_step
        self.reward_kind = reward_kind
        self.goal_radius = goal_radius
        self.goal_tolerance = goal_tolerance

    def _reward(self, distance: jax.Array) -> jax.Array:
        if self.reward_kind == "dense":
            return -distance
        return jnp.where(distance <= self.goal_radius, 1.0 - distance, 0.0)

    def _terminated(self, offset: jax.Array) -> jax.Array:
        """``offset`` [..., 2] = position - goal; the reference's per-axis test."""
        if self.goal_tolerance is None:
            return jnp.zeros(offset.shape[:-1], jnp.bool_)
        return jnp.all(jnp.abs(offset) < self.goal_tolerance, axis=-1)

    def reset_env(self, key: jax.Array, params: GoalParams) -> tuple[jax.Array, PointState]:
        del key, params
        state = PointState(time=jnp.int32(0), position=jnp.zeros((2,), jnp.float32))
        return state.position, state

    def step_env(self, key: jax.Array, state: PointState, action: jax.Array, params: GoalParams):
        del key
        move = jnp.clip(jnp.asarray(action, jnp.float32), -self.max_step, self.max_step)
        position = state.position + move
        offset = position - params.goal
        distance = jnp.linalg.norm(offset)
        reward = self._reward(distance).astype(jnp.float32)
        terminated = self._terminated(offset)
        info = {"distance": distance, "dense_reward": (-distance).astype(jnp.float32)}
        return (
            position,
            PointState(time=state.time + 1, position=position),
            reward,
            terminated,
            info,
        )

    def observation_space(self, params: GoalParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (2,), jnp.float32)

    def action_space(self, params: GoalParams | None = None) -> spaces.Box:
        return spaces.Box(-self.max_step, self.max_step, (2,), jnp.float32)

    def oracle_action(self, position: jax.Array, params: GoalParams) -> jax.Array:
        """The optimal action: every axis at full speed towards the goal."""
        return jnp.clip(params.goal - position, -self.max_step, self.max_step)

    def oracle_episode_return(self, params: GoalParams) -> jax.Array:
        """Exact return of ``oracle_action`` from the origin; works on batched params.

        After t moves axis i is ``max(|g_i| - max_step * t, 0)`` from the goal; rewards count up
        to and including the terminating step.
        """
        goal = jnp.asarray(params.goal, jnp.float32)  # [..., 2]
        steps = jnp.arange(1, self.horizon + 1, dtype=jnp.float32)  # [H]
        gap = jnp.maximum(jnp.abs(goal)[..., None, :] - self.max_step * steps[:, None], 0.0)
        rewards = self._reward(jnp.linalg.norm(gap, axis=-1))  # [..., H]
        terminated = self._terminated(gap).astype(jnp.int32)  # [..., H]
        alive = (jnp.cumsum(terminated, axis=-1) - terminated) == 0  # no earlier termination
        return jnp.sum(jnp.where(alive, rewards, 0.0), axis=-1)


def _square_goal(key: jax.Array) -> GoalParams:
    return GoalParams(goal=jax.random.uniform(key, (2,), minval=-0.5, maxval=0.5))


def _ring_goal(key: jax.Array) -> GoalParams:
    """Uniform on ``0.5 < ||g||_inf <= 1``: the ring as four strips, picked by area."""
    key_strip, key_u, key_v = jax.random.split(key, 3)
    # strips: top and bottom (1 x 2 each, area 1), left and right (0.5 x 1 each, area 0.5)
    strip = jax.random.choice(key_strip, 4, p=jnp.array([1.0, 1.0, 0.5, 0.5]) / 3.0)
    u = jax.random.uniform(key_u, minval=-1.0, maxval=1.0)  # along a long strip
    v = 1.0 - jax.random.uniform(key_v, minval=0.0, maxval=0.5)  # across a strip: (0.5, 1]
    w = u / 2.0  # along a short strip, in [-0.5, 0.5]
    sign = jnp.where(strip % 2 == 0, 1.0, -1.0)
    long_strip = jnp.stack([u, sign * v])
    short_strip = jnp.stack([sign * v, w])
    return GoalParams(goal=jnp.where(strip < 2, long_strip, short_strip))


def _half_circle_goal(low: float, high: float):
    def sample(key: jax.Array) -> GoalParams:
        angle = jax.random.uniform(key, minval=low, maxval=high)
        return GoalParams(goal=jnp.stack([jnp.cos(angle), jnp.sin(angle)]))

    return sample


def make_nav2d(
    horizon: int = 100,
    max_step: float = 0.1,
    goal_tolerance: float = 0.01,
    num_test_tasks: int = 1000,
    split_seed: int = 0,
) -> tuple[PointNavigation, TaskDistribution]:
    """MAML's 2D navigation: goal ~ U[-0.5, 0.5]^2, dense reward, terminate at the goal."""
    env = PointNavigation(horizon, max_step, "dense", goal_tolerance=goal_tolerance)
    tasks = TaskDistribution(
        _square_goal,
        num_test_tasks=num_test_tasks,
        split_seed=split_seed,
        sample_ood_task=_ring_goal,
    )
    return env, tasks


def _make_point_robot(
    reward_kind: RewardKind,
    horizon: int,
    goal_radius: float,
    num_train_tasks: int | None,
    num_test_tasks: int,
    split_seed: int,
) -> tuple[PointNavigation, TaskDistribution]:
    check_splits(num_train_tasks, num_test_tasks)
    env = PointNavigation(horizon, 0.1, reward_kind, goal_radius=goal_radius)
    tasks = TaskDistribution(
        _half_circle_goal(0.0, jnp.pi),
        num_train_tasks=num_train_tasks,
        num_test_tasks=num_test_tasks,
        split_seed=split_seed,
        sample_ood_task=_half_circle_goal(jnp.pi, 2 * jnp.pi),
    )
    return env, tasks


def make_point_robot_sparse(
    horizon: int = 20,
    goal_radius: float = 0.2,
    num_train_tasks: int | None = 80,
    num_test_tasks: int = 20,
    split_seed: int = 0,
) -> tuple[PointNavigation, TaskDistribution]:
    """PEARL's sparse point robot: half-circle goals, reward only within ``goal_radius``."""
    return _make_point_robot(
        "sparse", horizon, goal_radius, num_train_tasks, num_test_tasks, split_seed
    )


def make_point_robot_dense(
    horizon: int = 20,
    num_train_tasks: int | None = 80,
    num_test_tasks: int = 20,
    split_seed: int = 0,
) -> tuple[PointNavigation, TaskDistribution]:
    """PEARL's point robot with half-circle goals and the dense reward -distance."""
    return _make_point_robot("dense", horizon, 0.2, num_train_tasks, num_test_tasks, split_seed)
