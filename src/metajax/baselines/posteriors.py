"""Exact (or numerically exact) task posteriors of a trial's history, per registered family.

``posterior_for(name, env_options, **options)`` returns a pure function
``(transitions, mask=None) -> PosteriorTrace`` of ONE trial's transitions (leaves ``[T, ...]``,
as ``metajax.rollout`` returns them for one env; plain or ``TrialWrapper`` trials alike);
``jax.vmap`` it over trials (``in_axes=1`` on a rollout's ``[T, B]`` leaves) and jit at the
top. The trace has ``T + 1`` rows: row 0 is the prior, row ``t + 1`` the posterior after steps
``0..t``; ``expected_sq_error`` is the Bayes floor, what no learner can beat in expectation when
it predicts the task parameters from the same history.

``task_parameters(name, env_params)`` gives the true parameters ``[..., P]`` in the same order
as the trace's ``mean``:

- ``bernoulli-bandit``: the arms' p [arms]; exact Beta(1, 1) posteriors.
- ``tabular-mdp``: the reward means [S A] then the transitions [S A S]; exact Normal-Normal and
  Dirichlet(1) posteriors.
- ``nav2d``, ``point-robot-dense``, ``point-robot-sparse``: the goal [2]; grid posteriors
  (see ``posteriors_grid`` for the noise tolerance ``noise_std``).
- ``cheetah-vel``: the target velocity [1]; a grid posterior that needs each step's forward
  velocity ``info["x_velocity"]``: brax's ``x_velocity`` metric (the torso's x displacement over
  the step / dt), the one in the reward. The env must put it in its step info
  (``BraxTaskEnv.step_env`` returns ``{}`` today). The observation cannot stand in: its root
  velocity ``qd[0]`` (index 8) is instantaneous and differs from ``x_velocity`` by 0.73 m/s rms
  under random actions (x_velocity itself: 0.82 m/s rms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metajax.baselines.posteriors_conjugate import (
    BanditSpec,
    PosteriorTrace,
    TabularSpec,
    bandit_posterior,
    tabular_posterior,
)
from metajax.baselines.posteriors_grid import (
    GoalGridSpec,
    VelocityGridSpec,
    goal_posterior,
    velocity_posterior,
)
from metajax.errors import ConfigError
from metajax.types import Transition

PosteriorFn = Callable[..., PosteriorTrace]  # (transitions [T], mask [T] | None) -> trace


def _flat(x: jax.Array) -> jax.Array:
    return jnp.reshape(x, (x.shape[0], -1))


def _obs(transitions: Transition) -> jax.Array:
    """The inner env's observation each action was taken in [T, ...] (first in a trial's obs)."""
    return _flat(transitions.obs)


def _next_obs(transitions: Transition) -> jax.Array:
    """The inner env's observation after each action, before any reset [T, ...]."""
    return _flat(transitions.info.get("episode_final_obs", transitions.next_obs))


# ---------------------------------------------------------------------------------------------
# FAMILIES: (env options, posterior options) -> a function of one trial's transitions
# ---------------------------------------------------------------------------------------------


def _bandit(env_options: dict, options: dict) -> PosteriorFn:
    spec = BanditSpec(arms=env_options.get("arms", 5))

    def posterior(transitions: Transition, mask=None) -> PosteriorTrace:
        return bandit_posterior(spec, transitions.action, transitions.reward, mask)

    return posterior


def _tabular(env_options: dict, options: dict) -> PosteriorFn:
    spec = TabularSpec(env_options.get("num_states", 10), env_options.get("num_actions", 5))
    num_s = spec.num_states

    def posterior(transitions: Transition, mask=None) -> PosteriorTrace:
        states = jnp.argmax(_obs(transitions)[:, :num_s], axis=-1)
        next_states = jnp.argmax(_next_obs(transitions)[:, :num_s], axis=-1)
        return tabular_posterior(
            spec, states, transitions.action, transitions.reward, next_states, mask
        )

    return posterior


def _goal(prior: str, ood_prior: str, reward_kind: str) -> Callable[[dict, dict], PosteriorFn]:
    def build(env_options: dict, options: dict) -> PosteriorFn:
        spec = GoalGridSpec(
            prior=ood_prior if options["split"] == "ood" else prior,
            reward_kind=reward_kind,
            goal_radius=env_options.get("goal_radius", 0.2),
            noise_std=options["noise_std"],
            resolution=options["resolution"],
        )

        def posterior(transitions: Transition, mask=None) -> PosteriorTrace:
            positions = _next_obs(transitions)[:, :2]
            return goal_posterior(spec, positions, transitions.reward, mask)

        return posterior

    return build


def _cheetah_vel(env_options: dict, options: dict) -> PosteriorFn:
    low, high = env_options.get("min_velocity", 0.0), env_options.get("max_velocity", 2.0)
    if options["split"] == "ood":
        low, high = high, high + 1.0
    spec = VelocityGridSpec(low, high, options["noise_std"], options["resolution"])

    def posterior(transitions: Transition, mask=None) -> PosteriorTrace:
        if "x_velocity" not in transitions.info:
            raise ConfigError(
                "cheetah-vel posterior: the transitions' info has no 'x_velocity' (the env must "
                "report brax's x_velocity metric in its step info)"
            )
        velocity = transitions.info["x_velocity"]
        return velocity_posterior(spec, velocity, transitions.action, transitions.reward, mask)

    return posterior


def _goal_parameters(params) -> jax.Array:
    return jnp.asarray(params.goal, jnp.float32)


def _tabular_parameters(params) -> jax.Array:
    batch = params.reward_means.shape[:-2]
    return jnp.concatenate(
        [params.reward_means.reshape(*batch, -1), params.transitions.reshape(*batch, -1)], -1
    )


@dataclass(frozen=True)
class PosteriorFamily:
    """How one registered family's posterior is built and what its task parameters are."""

    build: Callable[[dict, dict], PosteriorFn]  # (env options, posterior options) -> posterior
    parameters: Callable[[object], jax.Array]  # env params [...] -> [..., P]
    options: dict  # posterior options with their defaults


# grid defaults: noise_std about the grid spacing; on random-policy trials the mean squared
# error of the posterior mean then matches the reported floor until the goal is pinned down
# (a coarser grid under-reports the floor: nav2d at 200 cells, noise 0.001)
_CIRCLE = {"split": "train", "noise_std": 0.001, "resolution": 4000}  # 7.9e-4 of arc per cell
POSTERIORS: dict[str, PosteriorFamily] = {
    "bernoulli-bandit": PosteriorFamily(_bandit, lambda p: jnp.asarray(p.arm_probs), {}),
    "tabular-mdp": PosteriorFamily(_tabular, _tabular_parameters, {}),
    "nav2d": PosteriorFamily(  # 400 cells per unit: 160,000 points, 0.0025 apart
        _goal("square", "ring", "dense"),
        _goal_parameters,
        {"split": "train", "noise_std": 0.0025, "resolution": 400},
    ),
    "point-robot-dense": PosteriorFamily(
        _goal("half-circle", "lower-half-circle", "dense"), _goal_parameters, _CIRCLE
    ),
    "point-robot-sparse": PosteriorFamily(
        _goal("half-circle", "lower-half-circle", "sparse"), _goal_parameters, _CIRCLE
    ),
    "cheetah-vel": PosteriorFamily(  # 4000 cells over [0, 2]: 5e-4 m/s apart
        _cheetah_vel,
        lambda p: jnp.asarray(p.target_velocity, jnp.float32)[..., None],
        {"split": "train", "noise_std": 0.001, "resolution": 4000},
    ),
}


def names() -> list[str]:
    """The registered env names that have an exact posterior, sorted."""
    return sorted(POSTERIORS)


def _family(name: str) -> PosteriorFamily:
    if name not in POSTERIORS:
        raise ConfigError(
            f"no exact task posterior for env '{name}'; families with one: {', '.join(names())}"
        )
    return POSTERIORS[name]


def _check_options(name: str, allowed: dict, options: dict) -> dict:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        shown = ", ".join(f"{k}={v!r}" for k, v in allowed.items()) or "none"
        raise ConfigError(
            f"unknown posterior option(s) {', '.join(unknown)} for '{name}'; allowed: {shown}"
        )
    merged = {**allowed, **options}
    if merged.get("split", "train") not in ("train", "ood"):
        raise ConfigError(f"posterior '{name}': split must be 'train' or 'ood'")
    if not merged.get("noise_std", 1.0) > 0 or not merged.get("resolution", 1) >= 1:
        raise ConfigError(f"posterior '{name}': need noise_std > 0 and resolution >= 1")
    return merged


def posterior_for(name: str, env_options: dict | None = None, **options) -> PosteriorFn:
    """The pure posterior function of one trial's transitions for env ``name``.

    Args:
        name: a registered env name (see ``names()``).
        env_options: the options the env was made with (``envs.make(name, **env_options)``);
            those that shape the prior or the reward are read, the others ignored.
        options: posterior options (see ``POSTERIORS[name].options``): ``split`` ("train", or
            "ood" for the family's out-of-distribution prior), ``noise_std``, ``resolution``.
    """
    family = _family(name)
    return family.build(dict(env_options or {}), _check_options(name, family.options, options))


def task_parameters(name: str, env_params) -> jax.Array:
    """The true task parameters [..., P] of (possibly batched) ``env_params``."""
    return _family(name).parameters(env_params)
