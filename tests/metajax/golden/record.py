"""Golden metrics: every registered learner at a tiny fixed-seed config, recorded on CPU.

For each case: the metrics of the first 3 jitted ``train_step`` calls and the evaluation
returns on 4 held-out tasks, through the public ``learners.get`` API. A refactor must leave
them unchanged (``test_golden.py``). Regenerate only when a change is *meant* to alter the
numbers, and say why in the commit message:

    python -m tests.metajax.golden.record          # rewrites golden_metrics.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PATH = Path(__file__).with_name("golden_metrics.json")
NUM_UPDATES = 3
EVAL_TASKS = 4

_MAML_TINY = dict(
    num_tasks=4,
    num_trajectories=3,
    hidden_sizes=(8, 8),
    eval_inner_steps=1,
    eval_trajectories=3,
    eval_task_chunk=4,
    cg_iters=3,
)
_PEARL_TINY = dict(
    num_tasks=4,
    collect_tasks=4,
    batch_size=8,
    context_batch_size=8,
    gradient_steps=2,
    initial_steps=40,
    prior_steps=20,
    posterior_steps=20,
    rl_capacity=100,
    hidden_sizes=(16, 16),
    encoder_hidden_sizes=(8,),
)
_RL2_TINY = dict(
    num_tasks=8,
    num_minibatches=2,
    core_size=8,
    hidden_sizes=(8,),
    update_epochs=2,
    episodes_per_trial=4,
)
_VARIBAD_TINY = dict(
    num_tasks=8,
    episodes_per_trial=2,
    latent_size=3,
    encoder_hidden_size=8,
    state_embed_size=4,
    action_embed_size=4,
    reward_embed_size=4,
    reward_decoder_sizes=(8,),
    policy_state_embed=8,
    policy_latent_embed=8,
    hidden_sizes=(8,),
    vae_buffer_trials=16,
    vae_batch_trials=4,
    vae_updates=2,
    num_minibatches=2,
)

# name -> (learner, env, env options, learner options)
CASES: dict[str, tuple[str, str, dict, dict]] = {
    "rl2-gru-bandit": ("rl2", "bernoulli-bandit", {"arms": 3}, _RL2_TINY),
    "rl2-lstm-mdp": (
        "rl2",
        "tabular-mdp",
        {"num_states": 3, "num_actions": 2, "horizon": 3},
        {**_RL2_TINY, "core": "lstm", "episodes_per_trial": 2},
    ),
    "maml-trpo-nav2d": ("maml", "nav2d", {"horizon": 5}, _MAML_TINY),
    "maml-ppo-nav2d": ("maml", "nav2d", {"horizon": 5}, {**_MAML_TINY, "outer": "ppo"}),
    "promp-nav2d": ("promp", "nav2d", {"horizon": 5}, _MAML_TINY),
    "emaml-nav2d": ("emaml", "nav2d", {"horizon": 5}, _MAML_TINY),
    "pearl-point-robot": ("pearl", "point-robot-dense", {}, _PEARL_TINY),
    "varibad-point-robot": ("varibad", "point-robot-dense", {}, _VARIBAD_TINY),
    "sac-point-robot": (
        "sac",
        "point-robot-dense",
        {},
        dict(
            num_tasks=4,
            steps_per_update=2,
            gradient_steps=2,
            batch_size=8,
            warmup_steps=10,
            buffer_capacity=50,
            hidden_sizes=(16, 16),
        ),
    ),
}


def run_case(name: str) -> dict:
    """Metrics of the first updates and evaluation returns of one case, as Python floats."""
    import jax
    import numpy as np

    import metajax.envs as envs
    from metajax import learners

    learner_name, env_name, env_options, options = CASES[name]
    env, tasks = envs.make(env_name, **env_options)
    config_cls, make_learner = learners.get(learner_name)
    learner = make_learner(config_cls(**options), env, tasks)
    state = jax.jit(learner.init)(jax.random.key(0))
    step = jax.jit(learner.train_step)
    metrics = []
    for t in range(NUM_UPDATES):
        state, m = step(state, jax.random.fold_in(jax.random.key(1), t))
        metrics.append({k: float(np.asarray(v)) for k, v in sorted(m.items())})
    returns = jax.jit(learner.evaluate)(state, jax.random.key(2), tasks.test_tasks(EVAL_TASKS))
    return {"metrics": metrics, "eval_returns": np.asarray(returns, np.float64).tolist()}


def main() -> None:
    names = sys.argv[1:] or list(CASES)
    golden = json.loads(PATH.read_text()) if PATH.exists() else {}
    for name in names:
        golden[name] = run_case(name)
        print(name, "recorded", flush=True)
    PATH.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
