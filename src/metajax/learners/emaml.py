"""E-MAML (Stadie et al. 2018): MAML-TRPO plus the term that credits the pre-update sampling
distribution with the post-update return (``exploration_weight``)."""

from __future__ import annotations

from dataclasses import dataclass

from metajax.envs.core import MetaEnv, TaskDistribution
from metajax.learners import maml
from metajax.learners.base import Learner


@dataclass(frozen=True)
class Config(maml.Config):
    """``maml.Config`` with the E-MAML exploration term switched on."""

    exploration_weight: float = 1.0  # weight of the sampling-distribution term


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """The E-MAML learner."""
    return maml.make_learner(config, env, tasks, name="emaml")
