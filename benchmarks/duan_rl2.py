"""Reproduces Duan et al. (2016): RL² against the classic baselines on bandits and tabular MDPs.

Bandit cells (n pulls, k arms): RL² is trained with the metajax trainer, then evaluated on the
1000 held-out test tasks, beside every classic baseline (constants tuned on training tasks, see
``benchmarks.bandit_baselines``). Tabular MDPs (10 states, 5 actions, T = 10): RL² over n = 10
and 25 episodes beside random, PSRL and the task-knowing oracle. The paper's figures sit in the
same table.

    python -m benchmarks.duan_rl2                      # the CPU sizes
    python -m benchmarks.duan_rl2 --cells 10x5 --mdp-episodes --updates 20   # a smoke run
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import jax
import numpy as np

import metajax.envs as envs
from benchmarks.bandit_baselines import run_cell
from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results
from metajax.baselines.mdp import run_mdp_baseline
from metajax.learners import rl2
from metajax.train import TrainConfig, train

PAPER_RL2_BANDIT = {
    (10, 5): 6.7,
    (10, 10): 6.7,
    (10, 50): 6.8,
    (100, 5): 78.7,
    (100, 10): 83.5,
    (100, 50): 84.9,
}
PAPER_MDP = {10: {"random": 100.1, "psrl": 138.1, "rl2": 156.2}, 25: {"rl2": 445.7, "opsrl": 425.2}}


def train_rl2(
    env_name: str, env_options: dict, config: rl2.Config, updates: int, run_dir: Path, seed: int
):
    """Trains RL² with the metajax trainer; returns the learner, its state and the run's time."""
    env, tasks = envs.make(env_name, **env_options)
    learner = rl2.make_learner(config, env, tasks)
    tic = time.perf_counter()
    state, history = train(
        learner,
        TrainConfig(
            run_dir=str(run_dir),
            num_updates=updates,
            updates_per_chunk=10,
            checkpoint_every=10_000,  # updates
            seed=seed,
            progress=False,
            tensorboard=False,
        ),
        config.num_tasks,
    )
    seconds = time.perf_counter() - tic
    return learner, state, tasks, env, seconds, updates * learner.env_steps_per_update


def _mean_ci(totals) -> tuple[float, float]:
    totals = np.asarray(totals, np.float64)
    return float(totals.mean()), float(1.96 * totals.std(ddof=1) / math.sqrt(totals.size))


def bandit_cell(pulls: int, arms: int, args, work: Path) -> dict:
    """RL² and the baselines on one (n, k) cell."""
    config = rl2.Config(
        num_tasks=args.num_tasks if pulls <= 10 else args.num_tasks_long,
        episodes_per_trial=pulls,
        core_size=args.core_size,
    )
    updates = args.updates if pulls <= 10 else args.updates_long
    learner, state, tasks, _, seconds, steps = train_rl2(
        "bernoulli-bandit",
        {"arms": arms, "num_test_tasks": args.test_tasks},
        config,
        updates,
        work / f"bandit_{pulls}x{arms}",
        args.seed,
    )
    returns = jax.jit(learner.evaluate)(state, jax.random.key(args.seed + 7), tasks.test_tasks())
    rl2_mean, rl2_ci = _mean_ci(returns.sum(axis=1))
    baselines = run_cell(pulls, arms, args.test_tasks, args.seed)
    best = max(baselines["rows"], key=lambda r: r["mean"])
    gap = (best["mean"] - rl2_mean) / best["mean"]
    print(
        f"n={pulls} k={arms}: RL² {rl2_mean:.2f} ± {rl2_ci:.2f} vs best baseline "
        f"{best['baseline']} {best['mean']:.2f} (gap {gap:+.1%}); {seconds:.0f} s",
        flush=True,
    )
    return {
        "pulls": pulls,
        "arms": arms,
        "rl2": {
            "mean": rl2_mean,
            "ci95": rl2_ci,
            "paper": PAPER_RL2_BANDIT.get((pulls, arms)),
            "updates": updates,
            "env_steps": steps,
            "train_seconds": seconds,
        },
        "baselines": baselines["rows"],
        "best_baseline": best["baseline"],
        "gap_to_best": gap,
    }


def mdp_cell(episodes: int, args, work: Path) -> dict:
    """RL², random, PSRL and the oracle on tabular MDPs with ``episodes`` episodes per trial."""
    config = rl2.Config(
        num_tasks=args.num_tasks_long,
        episodes_per_trial=episodes,
        core_size=args.core_size,
        reward_scale=args.mdp_reward_scale,
    )
    learner, state, tasks, env, seconds, steps = train_rl2(
        "tabular-mdp",
        {"num_test_tasks": args.test_tasks},
        config,
        args.updates_mdp,
        work / f"mdp_{episodes}",
        args.seed,
    )
    test = tasks.test_tasks()
    returns = jax.jit(learner.evaluate)(state, jax.random.key(args.seed + 7), test)
    rows = {"rl2": _mean_ci(returns.sum(axis=1))}
    key = jax.random.key(args.seed + 11)
    for name in ("random", "psrl"):
        run = jax.jit(run_mdp_baseline, static_argnums=(0, 1, 3))
        rows[name] = _mean_ci(run(name, env, test, episodes, key))
    rows["oracle"] = _mean_ci(episodes * env.oracle_episode_return(test))
    print(
        f"MDP n={episodes}: "
        + ", ".join(f"{k} {v[0]:.1f}" for k, v in rows.items())
        + f"; {seconds:.0f} s",
        flush=True,
    )
    return {
        "episodes": episodes,
        "rows": {k: {"mean": m, "ci95": c} for k, (m, c) in rows.items()},
        "paper": PAPER_MDP.get(episodes, {}),
        "rl2_updates": args.updates_mdp,
        "rl2_env_steps": steps,
        "train_seconds": seconds,
    }


def markdown(payload: dict) -> str:
    lines = [
        "# RL² vs classic baselines (Duan et al. 2016 reproduction)",
        "",
        metadata_markdown(payload["meta"]),
        f"RL²: GRU {payload['config']['core_size']}, {payload['config']['num_tasks']} "
        f"tasks per update for n = 10 bandits, {payload['config']['num_tasks_long']} for "
        f"longer trials, PPO; evaluated on {payload['config']['test_tasks']} held-out "
        "tasks; ± is a 95% interval over tasks.",
        "",
    ]
    if payload["bandits"]:
        lines += [
            "## Bernoulli bandits: total reward per trial",
            "",
            "| n, k | RL² (ours) | RL² (paper) | best baseline (ours) | gap | Gittins | "
            "UCB1 | TS | random | RL² env steps | train s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cell in payload["bandits"]:
            by_name = {r["baseline"]: r for r in cell["baselines"]}
            pick = lambda name, rows=by_name: f"{rows[name]['mean']:.2f}" if name in rows else "-"
            best = by_name[cell["best_baseline"]]
            r = cell["rl2"]
            lines.append(
                f"| {cell['pulls']}, {cell['arms']} | {r['mean']:.2f} ± {r['ci95']:.2f} | "
                f"{r['paper']} | {best['baseline']} {best['mean']:.2f} | "
                f"{-cell['gap_to_best']:+.1%} | {pick('gittins')} | {pick('ucb1')} | "
                f"{pick('thompson')} | {pick('random')} | {r['env_steps']:.2g} | "
                f"{r['train_seconds']:.0f} |"
            )
        lines.append("")
    if payload["mdps"]:
        lines += [
            "## Tabular MDPs (10 states, 5 actions, T = 10): total reward per trial",
            "",
            "| n | RL² (ours) | RL² (paper) | PSRL (ours) | PSRL (paper) | random | oracle | "
            "RL² env steps |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for cell in payload["mdps"]:
            rows, paper = cell["rows"], cell["paper"]
            fmt = lambda k, rows=rows: f"{rows[k]['mean']:.1f} ± {rows[k]['ci95']:.1f}"
            lines.append(
                f"| {cell['episodes']} | {fmt('rl2')} | {paper.get('rl2', '-')} | "
                f"{fmt('psrl')} | {paper.get('psrl', '-')} | {fmt('random')} | "
                f"{fmt('oracle')} | {cell['rl2_env_steps']:.2g} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="*", default=["10x5", "10x10", "100x5", "100x10"])
    parser.add_argument("--mdp-episodes", type=int, nargs="*", default=[10, 25])
    parser.add_argument("--updates", type=int, default=300, help="RL² updates, n = 10 cells")
    parser.add_argument("--updates-long", type=int, default=300, help="RL² updates, n = 100")
    parser.add_argument("--updates-mdp", type=int, default=300, help="RL² updates, MDPs")
    parser.add_argument(
        "--mdp-reward-scale",
        type=float,
        default=0.05,
        help="RL² reward scale on MDPs (unscaled returns near 100 swamp the policy gradient)",
    )
    parser.add_argument(
        "--num-tasks-long",
        type=int,
        default=256,
        help="tasks per update for long trials (n = 100 bandits, MDPs)",
    )
    parser.add_argument("--num-tasks", type=int, default=512)
    parser.add_argument("--core-size", type=int, default=128)
    parser.add_argument("--test-tasks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/duan_rl2"))
    args = parser.parse_args(argv)
    if args.work_dir.exists():
        import shutil

        shutil.rmtree(args.work_dir)  # the benchmark's own scratch runs, never user runs
    payload = {
        "meta": run_metadata(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "bandits": [],
        "mdps": [],
    }
    stem = f"duan_rl2_{device_slug()}"
    for cell in args.cells:  # results are written after every cell, so a cut run keeps them
        pulls, arms = (int(x) for x in cell.split("x"))
        payload["bandits"].append(bandit_cell(pulls, arms, args, args.work_dir))
        write_results(stem, payload, markdown(payload))
    for episodes in args.mdp_episodes:
        payload["mdps"].append(mdp_cell(episodes, args, args.work_dir))
        write_results(stem, payload, markdown(payload))
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
