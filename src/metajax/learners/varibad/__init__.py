"""VariBAD (Zintgraf et al. 2020): PPO on a learned Gaussian belief over the task, q(m | tau:t).

``nets`` (the GRU belief encoder, the reward and transition decoders, the belief-conditioned
actor-critic), ``config`` (Config, State, Setup), ``vae`` (encoding trials, the sequential KL,
the ELBO), ``buffer`` (the VAE's ring buffer of recent trials) and ``learner`` (acting, PPO
over whole trials, VAE steps, train_step, evaluate, make_learner).
"""

from metajax.learners.varibad.config import Config, Params, Setup, State, TrialBuffer
from metajax.learners.varibad.learner import (
    act,
    evaluate,
    init,
    make_learner,
    run_trials,
    state_partition,
    train_step,
)
from metajax.learners.varibad.vae import (
    TrialBatch,
    beliefs_along,
    elbo_loss,
    encode_trials,
    gaussian_kl,
    sequential_kl,
)

__all__ = [
    "Config",
    "Params",
    "Setup",
    "State",
    "TrialBatch",
    "TrialBuffer",
    "act",
    "beliefs_along",
    "elbo_loss",
    "encode_trials",
    "evaluate",
    "gaussian_kl",
    "init",
    "make_learner",
    "run_trials",
    "sequential_kl",
    "state_partition",
    "train_step",
]
