"""Classic tabular-MDP baselines on the held-out test tasks, next to Duan et al.'s Table 2.

The 1000 test tasks of ``metajax.envs.make("tabular-mdp")`` (|S| = 10, |A| = 5, T = 10); a
trial is n episodes. eps-greedy's eps is tuned on 1000 separate training tasks; ± is a 95%
confidence interval over tasks. The oracle row is the expected return of the optimal policy
that knows each task. Results go to ``benchmarks/results/mdp_baselines.{json,md}``.

    python benchmarks/mdp_baselines.py                    # n = 10
    python benchmarks/mdp_baselines.py --episodes 10 25
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import metajax.envs as envs
from benchmarks.common import run_metadata
from metajax.baselines.mdp import MDP_BASELINES, run_mdp_baseline
from metajax.distributed import device_info
from metajax.envs.core import tagged_key

# Duan et al. (2016), Table 2 at n = 10 (see /work/shared/ANCHORS.md)
ANCHORS = {
    10: {"random": 100.1, "psrl": 138.1, "eps-greedy": 132.8, "greedy": 134.8, "rl2": 156.2},
}
EPS_GRID = (0.0, 0.02, 0.05, 0.1, 0.2)


def run(episodes: int, num_tasks: int, seed: int) -> dict:
    """Evaluates every MDP baseline (eps tuned on training tasks) on the test tasks."""
    env, tasks = envs.make("tabular-mdp", num_test_tasks=num_tasks)
    key_train, key_tune, key_eval = (
        tagged_key(f"benchmarks/mdp_baselines/{part}", seed) for part in ("train", "tuning", "eval")
    )
    train, test = tasks.sample(key_train, num_tasks), tasks.test_tasks(num_tasks)
    anchors = ANCHORS.get(episodes, {})
    rows = []
    for name in MDP_BASELINES:
        start = time.perf_counter()
        options = {}
        if name == "eps-greedy":
            means = jax.vmap(
                lambda eps: run_mdp_baseline(
                    "eps-greedy", env, train, episodes, key_tune, eps=eps
                ).mean()
            )(jnp.asarray(EPS_GRID))
            options = {"eps": EPS_GRID[int(np.argmax(np.asarray(means)))]}
        totals = np.asarray(run_mdp_baseline(name, env, test, episodes, key_eval, **options))
        rows.append(
            {
                "baseline": name,
                "options": options,
                "mean": float(totals.mean()),
                "ci95": float(1.96 * totals.std(ddof=1) / math.sqrt(totals.size)),
                "anchor": anchors.get(name),
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
        print(f"  n={episodes} {name:12s} {rows[-1]['mean']:8.2f} ± {rows[-1]['ci95']:.2f}")
    oracle = episodes * np.asarray(env.oracle_episode_return(test))
    rows.append(
        {
            "baseline": "oracle (knows the task)",
            "options": {},
            "mean": float(oracle.mean()),
            "ci95": float(1.96 * oracle.std(ddof=1) / math.sqrt(oracle.size)),
            "anchor": None,
            "seconds": 0.0,
        }
    )
    return {"episodes": episodes, "rl2_anchor": anchors.get("rl2"), "rows": rows}


def _markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "# Tabular-MDP baselines vs Duan et al. (2016), Table 2",
        "",
        f"- command: `{meta['command']}`",
        f"- device: {meta['device']['platform']}, CPU {meta['device']['cpu_model']} "
        f"x {meta['device']['cpu_count']}; jax {meta['jax_version']}; {meta['date']}",
        f"- {meta['num_tasks']} held-out test tasks (|S| = 10, |A| = 5, T = 10); eps tuned on "
        f"{meta['num_tasks']} separate training tasks; ± is a 95% CI over tasks.",
        "",
    ]
    for cell in report["cells"]:
        lines += [
            f"## n = {cell['episodes']} episodes (RL² in the paper: {cell['rl2_anchor']})",
            "",
            "| baseline | tuned | mean total reward | paper |",
            "|---|---|---|---|",
        ]
        for row in cell["rows"]:
            tuned = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-"
            anchor = "-" if row["anchor"] is None else f"{row['anchor']}"
            measured = f"{row['mean']:.1f} ± {row['ci95']:.1f}"
            lines.append(f"| {row['baseline']} | {tuned} | {measured} | {anchor} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Runs the trials and writes the JSON and Markdown reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[10])
    parser.add_argument("--num-tasks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    cells = [run(n, args.num_tasks, args.seed) for n in args.episodes]
    report = {
        "meta": {
            **run_metadata(),
            "device": device_info(),
            "num_tasks": args.num_tasks,
            "seed": args.seed,
        },
        "cells": cells,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "mdp_baselines.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "mdp_baselines.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
