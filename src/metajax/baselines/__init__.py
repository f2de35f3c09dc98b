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
from metajax.baselines.mdp import (
    MDP_BASELINE_OPTIONS,
    MDP_BASELINES,
    mdp_baseline_rewards,
    plan,
    reward_posterior,
    run_mdp_baseline,
)

__all__ = [
    "BANDIT_BASELINES",
    "BASELINE_OPTIONS",
    "TUNING_GRIDS",
    "MDP_BASELINES",
    "MDP_BASELINE_OPTIONS",
    "BayesOptimalPolicy",
    "TunedBaseline",
    "bandit_baseline_rewards",
    "bayes_optimal_policy",
    "gittins_table",
    "mdp_baseline_rewards",
    "num_posterior_states",
    "plan",
    "reward_posterior",
    "run_bandit_baseline",
    "run_mdp_baseline",
    "tune_baseline",
]
