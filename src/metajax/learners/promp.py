"""ProMP (Rothfuss et al. 2019): the MAML core with the LVC inner estimator and PPO-clip outer.

Defaults follow the reference run script: meta-batch 40, 20 rollouts per task, inner lr 0.1,
meta lr 1e-3, 5 clipped steps per iteration, clip 0.3, inner-KL penalty 5e-4, MLP (64, 64).
"""

from __future__ import annotations

from dataclasses import dataclass

from metajax.envs.core import MetaEnv, TaskDistribution
from metajax.learners import maml
from metajax.learners.base import Learner


@dataclass(frozen=True)
class Config(maml.Config):
    """``maml.Config`` with ProMP's defaults."""

    num_tasks: int = 40
    inner_estimator: str = "lvc"
    outer: str = "ppo"
    outer_lr: float = 1e-3
    outer_epochs: int = 5
    clip_eps: float = 0.3
    inner_kl_coeff: float = 5e-4
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """The ProMP learner."""
    return maml.make_learner(config, env, tasks, name="promp")
