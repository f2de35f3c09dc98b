"""Reproduces Duan et al. (2016): RL² with any memory core against the classic baselines.

Bandit cells (n pulls, k arms) and tabular-MDP cells (10 states, 5 actions, T = 10, n episodes):
RL² is trained with the metajax trainer (``--core`` gru | lstm | transformer | lru | memory, at
one env-step budget per cell with ``--env-steps``), then evaluated on the held-out test tasks.
Beside it: our classic baselines (stored in ``results/bandit_baselines.json`` and
``results/mdp_baselines.json`` by ``benchmarks.bandit_baselines`` / ``benchmarks.mdp_baselines``;
``--baselines live`` recomputes them, ``none`` skips them) and the paper's figures. With
``--curve-points P`` the training stops P times (an exact resume) to evaluate held-out return
against env steps; ``--plot`` draws every stored run's curves, one line per core and cell.

    python -m benchmarks.duan_rl2                                  # every cell, GRU
    python -m benchmarks.duan_rl2 --core transformer --cells 100x5 --mdp-episodes --env-steps 5e6
    python -m benchmarks.duan_rl2 --cells 10x5 --mdp-episodes --updates 20   # a smoke run
    python -m benchmarks.duan_rl2 --plot                           # curves of the stored runs
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import numpy as np

import metajax.envs as envs
from benchmarks import common
from benchmarks.bandit_baselines import run_cell
from benchmarks.common import device_slug, run_metadata, write_results
from benchmarks.duan_report import markdown, plot_curves
from metajax import cores
from metajax.baselines.mdp import run_mdp_baseline
from metajax.learners import rl2
from metajax.train import CheckpointStore, TrainConfig, train

PAPER_RL2_BANDIT = {
    (10, 5): 6.7,
    (10, 10): 6.7,
    (10, 50): 6.8,
    (100, 5): 78.7,
    (100, 10): 83.5,
    (100, 50): 84.9,
    (500, 5): 401.6,
    (500, 10): 432.5,
    (500, 50): 438.9,
}
PAPER_MDP = {
    10: {"random": 100.1, "psrl": 138.1, "opsrl": 144.1, "rl2": 156.2},
    25: {"random": 250.2, "psrl": 408.8, "opsrl": 425.2, "rl2": 445.7},
    50: {"random": 499.7, "psrl": 904.4, "opsrl": 930.7, "rl2": 936.1},
}
DEFAULT_CELLS = ["10x5", "10x10", "100x5", "100x10", "100x50", "500x5"]


def train_rl2(env_name: str, env_options: dict, config: rl2.Config, updates: int, args, run_dir):
    """Trains RL² (in ``curve_points`` resumed segments, from the run dir's checkpoint with
    ``--resume``, stopping after the segment that passes ``--time-budget``); returns what the
    cell reports."""
    env, tasks = envs.make(env_name, **env_options)
    learner = rl2.make_learner(config, env, tasks)
    evaluate = jax.jit(learner.evaluate)
    segments = max(1, min(args.curve_points, updates))
    ends = sorted({round(updates * (i + 1) / segments) for i in range(segments)})
    start = latest_checkpoint(run_dir) if args.resume else 0
    curve, seconds, state, done = [], 0.0, None, start
    for end in [e for e in ends if e > start]:
        tic = time.perf_counter()
        state, _ = train(learner, _train_config(args, run_dir, end, done > 0), config.num_tasks)
        seconds += time.perf_counter() - tic
        done = end
        if args.curve_points:
            held_out = tasks.test_tasks(min(args.curve_tasks, tasks.num_test_tasks))
            returns = evaluate(state, jax.random.key(args.seed + 5), held_out)
            steps = end * learner.env_steps_per_update
            curve.append({"env_steps": steps, "return": float(returns.sum(axis=1).mean())})
        if args.time_budget is not None and seconds >= args.time_budget:
            break
    if state is None:  # the checkpoint already holds every update
        state, _ = train(learner, _train_config(args, run_dir, done, True), config.num_tasks)
    returns = evaluate(state, jax.random.key(args.seed + 7), tasks.test_tasks())
    mean, ci = _mean_ci(returns.sum(axis=1))
    return (
        env,
        tasks,
        {
            "core": config.core,
            "mean": mean,
            "ci95": ci,
            "updates": done,
            "planned_updates": updates,
            "resumed_from": start,
            "env_steps": done * learner.env_steps_per_update,
            "train_seconds": seconds,
            "curve": curve,
        },
    )


def _train_config(args, run_dir, num_updates: int, resume: bool) -> TrainConfig:
    return TrainConfig(
        run_dir=str(run_dir),
        num_updates=num_updates,
        updates_per_chunk=10,
        checkpoint_every=10_000,  # updates: one at each segment's end
        seed=args.seed,
        resume=resume,
        progress=False,
        tensorboard=False,
    )


def latest_checkpoint(run_dir: Path) -> int:
    """The update of the run dir's latest checkpoint (0: none)."""
    if not (Path(run_dir) / "checkpoints").exists():
        return 0
    store = CheckpointStore(Path(run_dir), keep=1)  # keep only matters when saving
    try:
        return store.latest_step() or 0
    finally:
        store.close()


def _mean_ci(totals) -> tuple[float, float]:
    totals = np.asarray(totals, np.float64)
    return float(totals.mean()), float(1.96 * totals.std(ddof=1) / math.sqrt(totals.size))


def cell_ppo(args, long: bool) -> tuple[float, float]:
    """(reward scale, GAE lambda) of a bandit cell: the flags, else each cell's tuned values
    (n = 10: 1.0 / 0.95, as measured in results/duan_rl2_cpu.md; n >= 100: 0.1 / 0.7). MDP
    cells take the ``long`` lambda (their reward scale is ``--mdp-reward-scale``)."""
    scale = args.reward_scale if args.reward_scale is not None else (0.1 if long else 1.0)
    lam = args.gae_lambda if args.gae_lambda is not None else (0.7 if long else 0.95)
    return scale, lam


def rl2_config(
    args, trial_length: int, num_tasks: int, reward_scale: float, gae_lambda: float, updates: int
) -> rl2.Config:
    """RL²'s config for one cell from the command line's core and PPO options (with
    ``--anneal-lr`` the learning rate falls linearly to 0 over the cell's ``updates``)."""
    return rl2.Config(
        num_tasks=num_tasks,
        episodes_per_trial=trial_length,
        core=args.core,
        core_size=args.core_size,
        core_layers=args.core_layers,
        core_heads=args.core_heads,
        core_window=args.core_window,
        learning_rate=args.learning_rate,
        lr_decay_updates=updates if args.anneal_lr else 0,
        num_minibatches=args.num_minibatches,
        gamma=args.gamma,
        clip_value=args.clip_value,
        gae_lambda=gae_lambda,
        ent_coef=args.ent_coef,
        reward_scale=reward_scale,
        time_inputs=args.time_inputs,
        transition_inputs=args.transition_inputs,
        head_sizes=tuple(args.head_sizes),
    )


def num_updates(args, default: int, num_tasks: int, steps_per_trial: int) -> int:
    """``--env-steps`` turned into updates (so every core gets the same budget), else default."""
    if args.env_steps is None:
        return default
    return max(1, round(args.env_steps / (num_tasks * steps_per_trial)))


def stored_baselines(kind: str, key: str, value: int, arms: int | None = None) -> list[dict]:
    """The rows our baselines benchmark stored for a cell ([] when it has not run that cell)."""
    path = common.RESULTS / f"{kind}_baselines.json"
    if not path.exists():
        return []
    for cell in json.loads(path.read_text())["cells"]:
        if cell[key] == value and (arms is None or cell["arms"] == arms):
            return [r for r in cell["rows"] if not r["baseline"].startswith("oracle")]
    return []


def bandit_cell(pulls: int, arms: int, args, work: Path) -> dict:
    """RL² and the baselines on one (n, k) cell."""
    num_tasks = args.num_tasks if pulls <= 10 else args.num_tasks_long
    default = args.updates if pulls <= 10 else args.updates_long
    updates = num_updates(args, default, num_tasks, pulls)
    config = rl2_config(args, pulls, num_tasks, *cell_ppo(args, pulls > 10), updates)
    env_options = {"arms": arms, "num_test_tasks": args.test_tasks}
    run_dir = work / f"bandit_{pulls}x{arms}"
    _, _, ours = train_rl2("bernoulli-bandit", env_options, config, updates, args, run_dir)
    ours["paper"] = PAPER_RL2_BANDIT.get((pulls, arms))
    if args.baselines == "live":
        baselines = run_cell(pulls, arms, args.test_tasks, args.seed)["rows"]
    else:
        stored = stored_baselines("bandit", "pulls", pulls, arms)
        baselines = stored if args.baselines == "stored" else []
    best = max(baselines, key=lambda r: r["mean"]) if baselines else None
    gap = (best["mean"] - ours["mean"]) / best["mean"] if best else None
    print(
        f"n={pulls} k={arms}: RL² {args.core} {ours['mean']:.2f} ± {ours['ci95']:.2f}"
        + (f" vs {best['baseline']} {best['mean']:.2f} (gap {gap:+.1%})" if best else "")
        + f"; {ours['train_seconds']:.0f} s",
        flush=True,
    )
    return {
        "pulls": pulls,
        "arms": arms,
        "rl2": ours,
        "baselines": baselines,
        "best_baseline": best["baseline"] if best else None,
        "gap_to_best": gap,
    }


def mdp_cell(episodes: int, args, work: Path) -> dict:
    """RL² beside the MDP baselines with ``episodes`` episodes (T = 10) per trial."""
    updates = num_updates(args, args.updates_mdp, args.num_tasks_long, 10 * episodes)
    _, lam = cell_ppo(args, long=True)
    config = rl2_config(args, episodes, args.num_tasks_long, args.mdp_reward_scale, lam, updates)
    env_options = {"num_test_tasks": args.test_tasks}
    run_dir = work / f"mdp_{episodes}"
    env, tasks, ours = train_rl2("tabular-mdp", env_options, config, updates, args, run_dir)
    rows = {}
    if args.baselines == "stored":
        rows = {r["baseline"]: r for r in stored_baselines("mdp", "episodes", episodes)}
    elif args.baselines == "live":
        test, key = tasks.test_tasks(), jax.random.key(args.seed + 11)
        for name in ("random", "psrl"):
            run = jax.jit(run_mdp_baseline, static_argnums=(0, 1, 3))
            mean, ci = _mean_ci(run(name, env, test, episodes, key))
            rows[name] = {"baseline": name, "mean": mean, "ci95": ci}
    print(
        f"MDP n={episodes}: RL² {args.core} {ours['mean']:.1f}; "
        + ", ".join(f"{k} {v['mean']:.1f}" for k, v in rows.items())
        + f"; {ours['train_seconds']:.0f} s",
        flush=True,
    )
    return {
        "episodes": episodes,
        "rl2": ours,
        "baselines": list(rows.values()),
        "paper": PAPER_MDP.get(episodes, {}),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="*", default=DEFAULT_CELLS, help="bandit NxK cells")
    parser.add_argument("--mdp-episodes", type=int, nargs="*", default=[10, 25, 50])
    parser.add_argument("--core", choices=cores.names(), default="gru")
    parser.add_argument("--core-size", type=int, default=128)
    parser.add_argument("--core-layers", type=int, default=1)
    parser.add_argument("--core-heads", type=int, default=4)
    parser.add_argument("--core-window", type=int, default=None)
    parser.add_argument("--env-steps", type=float, default=None, help="budget per cell")
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds of training per cell: stop "
        "after the curve segment that passes it (with --curve-points, it checks at each point)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue each cell from its run dir's checkpoint"
    )
    parser.add_argument("--updates", type=int, default=300, help="RL² updates, n = 10 cells")
    parser.add_argument("--updates-long", type=int, default=300, help="RL² updates, n >= 100")
    parser.add_argument("--updates-mdp", type=int, default=300, help="RL² updates, MDPs")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--anneal-lr",
        action="store_true",
        help="learning rate falls linearly to 0 over each cell's planned updates",
    )
    parser.add_argument("--num-minibatches", type=int, default=4, help="PPO minibatches")
    parser.add_argument(
        "--time-inputs",
        action="store_true",
        help="RL²'s inputs also get the fractions of trial, episodes and episode done",
    )
    parser.add_argument(
        "--transition-inputs",
        action="store_true",
        help="RL²'s inputs also get the observation the previous action was taken in",
    )
    parser.add_argument(
        "--head-sizes",
        type=int,
        nargs="*",
        default=[],
        help="MLP layers over [core output, embedding] before RL²'s heads (default: linear)",
    )
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument(
        "--clip-value",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="PPO's value clipping (by clip_eps in reward units)",
    )
    parser.add_argument(
        "--gae-lambda",
        type=float,
        default=None,
        help="default: 0.95 for n = 10 bandits, 0.7 for longer trials and MDPs "
        "(results/duan_rl2_tuning_cpu.md)",
    )
    parser.add_argument("--ent-coef", type=float, default=0.01)
    parser.add_argument(
        "--reward-scale",
        type=float,
        default=None,
        help="bandits; default: 1.0 at n = 10, 0.1 at n >= 100 (there 1.0 learned far less, "
        "with or without value clipping: results/duan_rl2_tuning_cpu.md)",
    )
    parser.add_argument(
        "--mdp-reward-scale",
        type=float,
        default=0.05,
        help="RL² reward scale on MDPs (unscaled returns near 100 swamp the policy gradient)",
    )
    parser.add_argument("--num-tasks-long", type=int, default=256, help="n >= 100, MDPs")
    parser.add_argument("--num-tasks", type=int, default=512)
    parser.add_argument("--test-tasks", type=int, default=1000)
    parser.add_argument("--baselines", choices=["stored", "live", "none"], default="stored")
    parser.add_argument("--curve-points", type=int, default=0, help="held-out evals in training")
    parser.add_argument("--curve-tasks", type=int, default=200)
    parser.add_argument("--plot", action="store_true", help="only plot the stored runs' curves")
    parser.add_argument(
        "--plot-runs",
        type=Path,
        nargs="*",
        default=None,
        help="--plot: these stored runs' JSON (default: every results/duan_rl2*_<device>.json)",
    )
    parser.add_argument("--stem", default=None, help="default duan_rl2[_CORE]_<device>")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/duan_rl2"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Runs every requested cell (results written after each) or plots the stored curves."""
    args = parse_args(argv)
    slug = device_slug()
    if args.plot:
        paths = args.plot_runs or sorted(common.RESULTS.glob(f"duan_rl2*_{slug}.json"))
        out = plot_curves(paths, common.RESULTS / f"duan_rl2_curves_{slug}.png")
        print(out or "no stored run has curves (train with --curve-points)")
        return {"plot": str(out) if out else None}
    work = args.work_dir / args.core
    if work.exists() and not args.resume:
        import shutil

        shutil.rmtree(work)  # the benchmark's own scratch runs, never user runs
    payload = {
        "meta": run_metadata(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "bandits": [],
        "mdps": [],
    }
    stem = args.stem or ("duan_rl2_" + ("" if args.core == "gru" else f"{args.core}_") + slug)
    for cell in args.cells:  # results are written after every cell, so a cut run keeps them
        pulls, arms = (int(x) for x in cell.split("x"))
        payload["bandits"].append(bandit_cell(pulls, arms, args, work))
        write_results(stem, payload, markdown(payload))
    for episodes in args.mdp_episodes:
        payload["mdps"].append(mdp_cell(episodes, args, work))
        write_results(stem, payload, markdown(payload))
    print(markdown(payload))
    return payload


if __name__ == "__main__":
    main()
