"""Task posteriors on a fine grid: goals of nav2d and the point robots, cheetah-vel's velocity.

The prior is the family's task distribution discretized on cell midpoints (a midpoint rule, so
grid moments converge to the exact ones as the grid refines). Rewards here are deterministic
functions of the observed position (or velocity) and the task, so the exact posterior is
degenerate (after one dense reward the goal lies on a circle; after three non-collinear ones it
is a point). The grid keeps it smooth with a small Gaussian observation noise ``noise_std`` on the
distance implied by a reward: read ``noise_std`` as a tolerance, and an expected squared error
below about ``noise_std**2`` as "known up to the grid". Keep ``noise_std`` near the grid spacing
or above (much below it, the grid aliases and under-reports the posterior's spread).
A sparse reward of 0 is the exact indicator of "farther than ``goal_radius``"; an inconsistent
observation costs ``log_outlier`` (a finite penalty, so no history empties the grid).

A ``lax.scan`` over steps carries the log posterior [G] and emits its moments, so memory is
O(G) per trial whatever T is; under ``vmap`` a few [B, G] float32 buffers (nav2d's default grid
has G = 160,000: about 2.5 GB for B = 1000), so map over chunks of trials where that is tight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metajax.baselines.posteriors_conjugate import PosteriorTrace, make_trace


def _moments(log_post: jax.Array, points: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean [P] and variance [P] of the grid distribution exp(log_post) [G] over points [G, P]."""
    weights = jax.nn.softmax(log_post)
    mean = weights @ points
    return mean, weights @ jnp.square(points - mean)


def grid_posterior(
    log_prior: jax.Array,
    points: jax.Array,
    log_likelihood: Callable[[jax.Array, object], jax.Array],
    observations: object,
    mask: jax.Array | None = None,
) -> PosteriorTrace:
    """Bayes' rule on a grid, step by step.

    Args:
        log_prior: [G] unnormalized log prior (-inf outside the support).
        points: [G, P] the task parameters of each grid point.
        log_likelihood: ``(points, one step's observation) -> [G]``.
        observations: a pytree with leaves [T, ...].
        mask: [T] optional; steps with mask 0 leave the posterior unchanged.
    """
    num_steps = jax.tree.leaves(observations)[0].shape[0]
    valid = jnp.ones((num_steps,), bool) if mask is None else jnp.asarray(mask, bool)

    def step(log_post, inputs):
        observation, keep = inputs
        log_post = log_post + jnp.where(keep, log_likelihood(points, observation), 0.0)
        log_post = log_post - jax.nn.logsumexp(log_post)
        return log_post, _moments(log_post, points)

    _, (means, variances) = jax.lax.scan(step, log_prior, (observations, valid))
    prior_mean, prior_var = _moments(log_prior, points)
    return make_trace(
        jnp.concatenate([prior_mean[None], means]), jnp.concatenate([prior_var[None], variances])
    )


def _midpoints(low: float, high: float, cells: int) -> jax.Array:
    return low + (jnp.arange(cells, dtype=jnp.float32) + 0.5) * ((high - low) / cells)


# ---------------------------------------------------------------------------------------------
# GOALS IN THE PLANE (nav2d, point-robot-dense, point-robot-sparse)
# ---------------------------------------------------------------------------------------------

GOAL_PRIORS = ("square", "ring", "half-circle", "lower-half-circle")


@dataclass(frozen=True)
class GoalGridSpec:
    """A goal posterior on a grid.

    ``prior``: "square" U[-0.5, 0.5]^2 (nav2d), "ring" ``0.5 < |g|_inf <= 1`` (nav2d's OOD split),
    "half-circle" angle ~ U[0, pi] on the unit circle (point robots), "lower-half-circle"
    U[pi, 2 pi] (their OOD split). ``resolution``: cells per unit length (square, ring) or per
    half turn (circles).
    """

    prior: str = "square"
    reward_kind: str = "dense"
    goal_radius: float = 0.2
    noise_std: float = 0.0025
    resolution: int = 400
    log_outlier: float = -30.0


def goal_grid(spec: GoalGridSpec) -> tuple[jax.Array, jax.Array]:
    """The prior's grid: log prior [G] and goal points [G, 2]."""
    if spec.prior in ("half-circle", "lower-half-circle"):
        low = 0.0 if spec.prior == "half-circle" else math.pi
        angle = _midpoints(low, low + math.pi, spec.resolution)
        points = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        return jnp.zeros(spec.resolution), points
    half = 0.5 if spec.prior == "square" else 1.0
    axis = _midpoints(-half, half, int(round(2 * half * spec.resolution)))
    points = jnp.stack(jnp.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    inside = jnp.max(jnp.abs(points), axis=-1) > 0.5 if spec.prior == "ring" else True
    return jnp.broadcast_to(jnp.where(inside, 0.0, -jnp.inf), points.shape[:1]), points


def _goal_log_likelihood(spec: GoalGridSpec, goals: jax.Array, observation) -> jax.Array:
    """log p(reward | position after the move, goal) for every goal [G, 2]."""
    position, reward = observation
    distance = jnp.linalg.norm(goals - position, axis=-1)  # [G]
    if spec.reward_kind == "dense":  # reward = -distance
        return -0.5 * jnp.square((distance + reward) / spec.noise_std)
    # sparse: reward = 1 - distance within goal_radius (inclusive), else 0
    near = distance <= spec.goal_radius
    hit = -0.5 * jnp.square((distance - (1.0 - reward)) / spec.noise_std)
    hit = jnp.where(near, hit, spec.log_outlier)
    miss = jnp.where(near, spec.log_outlier, 0.0)
    return jnp.where(reward > 0.0, hit, miss)


def goal_posterior(
    spec: GoalGridSpec, positions: jax.Array, rewards: jax.Array, mask: jax.Array | None = None
) -> PosteriorTrace:
    """The goal [2] from positions after each move [T, 2] and the rewards there [T]."""
    log_prior, points = goal_grid(spec)
    likelihood = lambda goals, obs: _goal_log_likelihood(spec, goals, obs)  # noqa: E731
    return grid_posterior(log_prior, points, likelihood, (positions, rewards), mask)


# ---------------------------------------------------------------------------------------------
# TARGET VELOCITY (cheetah-vel)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VelocityGridSpec:
    """cheetah-vel: v* ~ U[low, high], reward = -|v_x - v*| - ctrl_cost |clip(a, -1, 1)|^2.

    ``resolution`` cells over [low, high]. Given the step's forward velocity v_x and action, the
    reward fixes |v_x - v*| exactly: v* is one of two points (one when the other is outside the
    prior) until a second velocity tells them apart.
    """

    low: float = 0.0
    high: float = 2.0
    noise_std: float = 0.001
    resolution: int = 4000
    ctrl_cost: float = 0.05


def _velocity_log_likelihood(spec: VelocityGridSpec, targets: jax.Array, observation):
    velocity, action, reward = observation
    action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
    gap = -(reward + spec.ctrl_cost * jnp.sum(jnp.square(action)))  # = |v_x - v*|
    return -0.5 * jnp.square((jnp.abs(velocity - targets[:, 0]) - gap) / spec.noise_std)


def velocity_posterior(
    spec: VelocityGridSpec,
    velocities: jax.Array,
    actions: jax.Array,
    rewards: jax.Array,
    mask: jax.Array | None = None,
) -> PosteriorTrace:
    """The target velocity [1] from forward velocities [T], actions [T, A] and rewards [T]."""
    points = _midpoints(spec.low, spec.high, spec.resolution)[:, None]  # [G, 1]
    likelihood = lambda targets, obs: _velocity_log_likelihood(spec, targets, obs)  # noqa: E731
    observations = (velocities, actions, rewards)
    return grid_posterior(jnp.zeros(spec.resolution), points, likelihood, observations, mask)
