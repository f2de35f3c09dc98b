"""ProMP (Rothfuss et al. 2019): the MAML core with the LVC inner estimator and PPO-clip outer.

Defaults follow the reference run script: meta-batch 40, 20 rollouts per task, inner lr 0.1,
meta lr 1e-3, 5 clipped steps per iteration, clip 0.3, inner-KL penalty 5e-4, MLP (64, 64).
The LVC inner objective weights by ``pi_theta / pi_old`` against the sampling policy's stored
log-probabilities (the reference's ``dist_info_old``), so from the second outer step on, when
``theta`` has moved, the inner gradient is importance-weighted.
"""

from __future__ import annotations

from dataclasses import dataclass

from metajax.envs.core import MetaEnv, TaskDistribution
from metajax.learners import maml
from metajax.learners.base import Learner


@dataclass(frozen=True)
class Config(maml.Config):
    """``maml.Config`` with ProMP's defaults."""

    num_tasks: int = 40  # meta-batch of tasks per meta-iteration (sharded over devices)
    inner_estimator: str = "lvc"  # "lvc" (low-variance curvature) or "vpg"
    outer: str = "ppo"  # "ppo" or "trpo"
    outer_lr: float = 1e-3  # PPO (Adam) meta learning rate
    outer_epochs: int = 5  # PPO gradient steps per meta-iteration
    clip_eps: float = 0.3  # PPO clipping of the outer likelihood ratio
    inner_kl_coeff: float = 5e-4  # KL penalty on the pre-update policies
    hidden_sizes: tuple[int, ...] = (64, 64)  # policy MLP layers
    activation: str = "tanh"  # policy MLP activation


def make_learner(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Learner:
    """The ProMP learner."""
    return maml.make_learner(config, env, tasks, name="promp")
