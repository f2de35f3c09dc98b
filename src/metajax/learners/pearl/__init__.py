"""PEARL (Rakelly et al. 2019): SAC conditioned on a task latent z inferred from context.

``latent`` (Gaussian factors, their product, the KL, the context encoder), ``collection``
(episodes with z, the prior/posterior schedule, stratified task slots), ``config`` (Config,
Setup, the state pytrees) and ``learner`` (init, train_step, evaluate, make_learner).
"""

from metajax.learners.pearl.collection import stratified_tasks
from metajax.learners.pearl.config import (
    DENSE_REWARD_KEY,
    RL_REWARDS,
    Config,
    OptStates,
    Params,
    Setup,
    State,
)
from metajax.learners.pearl.latent import (
    ContextEncoder,
    GaussianStats,
    combine,
    context_features,
    factor_stats,
    kl_to_standard_normal,
    posterior,
    product_of_gaussians,
)
from metajax.learners.pearl.learner import evaluate, init, make_learner, train_step

__all__ = [
    "DENSE_REWARD_KEY",
    "RL_REWARDS",
    "Config",
    "ContextEncoder",
    "GaussianStats",
    "OptStates",
    "Params",
    "Setup",
    "State",
    "combine",
    "context_features",
    "evaluate",
    "factor_stats",
    "init",
    "kl_to_standard_normal",
    "make_learner",
    "posterior",
    "product_of_gaussians",
    "stratified_tasks",
    "train_step",
]
