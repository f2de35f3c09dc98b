"""Classic, non-learned baselines that meta-RL results are compared against (Duan et al. 2016)."""

from metajax.baselines.bandits import (
    BANDIT_BASELINES,
    BASELINE_OPTIONS,
    TUNING_GRIDS,
    BayesOptimalPolicy,
    TunedBaseline,
    bandit_baseline_rewards,
    bayes_optimal_policy,
    gittins_table,
    num_posterior_states,
    run_bandit_baseline,
    tune_baseline,
)

__all__ = [
    "BANDIT_BASELINES",
    "BASELINE_OPTIONS",
    "TUNING_GRIDS",
    "BayesOptimalPolicy",
    "TunedBaseline",
    "bandit_baseline_rewards",
    "bayes_optimal_policy",
    "gittins_table",
    "num_posterior_states",
    "run_bandit_baseline",
    "tune_baseline",
]
