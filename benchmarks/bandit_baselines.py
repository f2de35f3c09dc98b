"""Classic Bernoulli-bandit baselines on the held-out test tasks, next to Duan et al.'s Table 1.

For each cell (n pulls, k arms): the 1000 test tasks of ``metajax.envs.make("bernoulli-bandit",
arms=k)``; every baseline's constant (eps, c, gamma) is tuned on 1000 separate training tasks
(fresh draws from the task distribution, as the paper tuned per cell), then its mean total
reward on the test tasks is reported with a 95% confidence interval (1.96 standard errors over
tasks). ``bayes-optimal`` runs only where its DP is tractable, and its exact expected value is
reported beside its Monte-Carlo mean. Results go to
``benchmarks/results/bandit_baselines.{json,md}``.

    python benchmarks/bandit_baselines.py                  # n in {10, 100}, k in {5, 10}
    python benchmarks/bandit_baselines.py --cells 10x5 500x10
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import metajax.envs as envs
from benchmarks.common import run_metadata
from metajax.baselines import (
    BANDIT_BASELINES,
    bayes_optimal_policy,
    num_posterior_states,
    run_bandit_baseline,
    tune_baseline,
)
from metajax.baselines.bandits import MAX_BAYES_OPTIMAL_STATES
from metajax.distributed import device_info
from metajax.envs.core import tagged_key

# Duan et al. (2016), Table 1 (see /work/shared/ANCHORS.md): (n, k) -> column -> total reward
ANCHORS = {
    (10, 5): dict(random=5.0, gittins=6.6, ts=5.7, ots=6.5, ucb1=6.7, eps=6.6, greedy=6.6, rl2=6.7),
    (10, 10): dict(
        random=5.0, gittins=6.6, ts=5.5, ots=6.2, ucb1=6.7, eps=6.6, greedy=6.6, rl2=6.7
    ),
    (10, 50): dict(
        random=5.1, gittins=6.5, ts=5.2, ots=5.5, ucb1=6.6, eps=6.5, greedy=6.5, rl2=6.8
    ),
    (100, 5): dict(
        random=49.9, gittins=78.3, ts=74.7, ots=77.9, ucb1=78.0, eps=75.4, greedy=74.8, rl2=78.7
    ),
    (100, 10): dict(
        random=49.9, gittins=82.8, ts=76.7, ots=81.4, ucb1=82.4, eps=77.4, greedy=77.1, rl2=83.5
    ),
    (100, 50): dict(
        random=49.8, gittins=85.2, ts=64.5, ots=67.7, ucb1=84.3, eps=78.3, greedy=78.0, rl2=84.9
    ),
    (500, 5): dict(
        random=249.8,
        gittins=405.8,
        ts=402.0,
        ots=406.7,
        ucb1=405.8,
        eps=388.2,
        greedy=380.6,
        rl2=401.6,
    ),
    (500, 10): dict(
        random=249.0,
        gittins=437.8,
        ts=429.5,
        ots=438.9,
        ucb1=437.1,
        eps=408.0,
        greedy=395.0,
        rl2=432.5,
    ),
    (500, 50): dict(
        random=249.6,
        gittins=463.7,
        ts=427.2,
        ots=437.6,
        ucb1=457.6,
        eps=413.6,
        greedy=402.8,
        rl2=438.9,
    ),
}
ANCHOR_COLUMN = {
    "random": "random",
    "greedy": "greedy",
    "eps-greedy": "eps",
    "ucb1": "ucb1",
    "thompson": "ts",
    "optimistic-thompson": "ots",
    "gittins": "gittins",
}


def run_cell(pulls: int, arms: int, num_tasks: int, seed: int) -> dict:
    """Tunes every baseline on training tasks and evaluates it on the held-out test tasks."""
    _, tasks = envs.make("bernoulli-bandit", arms=arms, num_test_tasks=num_tasks)
    key_train, key_tune, key_eval = (
        tagged_key(f"benchmarks/bandit_baselines/{part}", seed)
        for part in ("train", "tuning", "eval")
    )
    train_probs = tasks.sample(key_train, num_tasks).arm_probs
    test_probs = tasks.test_tasks(num_tasks).arm_probs
    rows = []
    for name in BANDIT_BASELINES:
        if name == "bayes-optimal" and num_posterior_states(arms, pulls) > MAX_BAYES_OPTIMAL_STATES:
            continue
        start = time.perf_counter()
        tuned = tune_baseline(name, train_probs, pulls, key_tune)
        totals = np.asarray(run_bandit_baseline(name, test_probs, pulls, key_eval, **tuned.options))
        row = {
            "baseline": name,
            "options": tuned.options,
            "mean": float(totals.mean()),
            "ci95": float(1.96 * totals.std(ddof=1) / math.sqrt(totals.size)),
            "anchor": ANCHORS.get((pulls, arms), {}).get(ANCHOR_COLUMN.get(name, ""), None),
            "seconds": round(time.perf_counter() - start, 2),
        }
        if name == "bayes-optimal":
            row["exact_value"] = bayes_optimal_policy(arms, pulls).value
        rows.append(row)
        print(
            f"  n={pulls:4d} k={arms:3d} {name:20s} {row['mean']:8.2f} ± {row['ci95']:.2f}",
            flush=True,
        )
    return {
        "pulls": pulls,
        "arms": arms,
        "rl2_anchor": ANCHORS.get((pulls, arms), {}).get("rl2"),
        "rows": rows,
    }


def _markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "# Bernoulli-bandit baselines vs Duan et al. (2016), Table 1",
        "",
        f"- command: `{meta['command']}`",
        f"- device: {meta['device']['platform']}, CPU {meta['device']['cpu_model']} "
        f"x {meta['device']['cpu_count']}; jax {meta['jax_version']}; {meta['date']}",
        f"- {meta['num_tasks']} held-out test tasks per cell (p ~ U[0,1]); constants tuned on "
        f"{meta['num_tasks']} separate training tasks; ± is a 95% CI over tasks.",
        "",
    ]
    for cell in report["cells"]:
        lines += [
            f"## n = {cell['pulls']}, k = {cell['arms']} (RL² in the paper: {cell['rl2_anchor']})",
            "",
            "| baseline | tuned | mean total reward | paper |",
            "|---|---|---|---|",
        ]
        for row in cell["rows"]:
            tuned = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "-"
            anchor = "-" if row["anchor"] is None else f"{row['anchor']}"
            if "exact_value" in row:
                anchor = f"(exact DP value {row['exact_value']:.3f})"
            measured = f"{row['mean']:.2f} ± {row['ci95']:.2f}"
            lines.append(f"| {row['baseline']} | {tuned} | {measured} | {anchor} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Runs the cells and writes the JSON and Markdown reports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["10x5", "10x10", "100x5", "100x10"])
    parser.add_argument("--num-tasks", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    cells = []
    for cell in args.cells:
        pulls, arms = (int(x) for x in cell.split("x"))
        cells.append(run_cell(pulls, arms, args.num_tasks, args.seed))
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
    (args.out_dir / "bandit_baselines.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "bandit_baselines.md").write_text(_markdown(report))
    print(_markdown(report))


if __name__ == "__main__":
    main()
