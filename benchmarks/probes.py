"""Task-inference probes (issue 15): how well, and how fast, each learner's representation
knows its task, beside the exact posterior (``metajax.inference``).

Each case trains briefly (or loads ``--runs-dir/<case>`` when it holds a checkpoint) and probes
the representation on held-out tasks: ridge probes fit on half of them, scored on the other
half, decoding the true task parameters and the exact posterior mean at every row, with the
posterior's expected error (the Bayes floor). Results: ``benchmarks/results/probes_<device>.
{md,json,png}``.

    python -m benchmarks.probes                      # every case, small CPU sizes
    python -m benchmarks.probes --cases rl2-bandit-n10 --scale 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, device_slug, metadata_markdown, run_metadata, write_results
from metajax.inference import probe
from metajax.inference.run import read_run, restore_latest
from metajax.runs import RunArgs, build
from metajax.runs import run_metadata as run_json
from metajax.train import TrainConfig, train

_RL2 = dict(num_minibatches=4, core_size=64, hidden_sizes=(64,), learning_rate=3e-3)
_NAV = {"horizon": 20}
_NAV_POSTERIOR = {"resolution": 200, "noise_std": 0.005}  # 40,000 cells, 0.005 apart
_PEARL = dict(
    num_tasks=8,
    collect_tasks=8,
    gradient_steps=50,
    batch_size=64,
    context_batch_size=32,
    initial_steps=100,
    prior_steps=40,
    posterior_steps=40,
    rl_capacity=5000,
    hidden_sizes=(64, 64),
    encoder_hidden_sizes=(64, 64),
    eval_episodes=3,
)
# case -> (learner, env, env options, learner options, updates at --scale 1, posterior options)
CASES = {
    "rl2-bandit-n10": (
        "rl2",
        "bernoulli-bandit",
        {"arms": 5},
        {**_RL2, "num_tasks": 256, "episodes_per_trial": 10},
        300,
        {},
    ),
    "rl2-bandit-n100": (
        "rl2",
        "bernoulli-bandit",
        {"arms": 5},
        {**_RL2, "num_tasks": 128, "episodes_per_trial": 100},
        150,
        {},
    ),
    "rl2-nav2d": (
        "rl2",
        "nav2d",
        _NAV,
        {**_RL2, "num_tasks": 64, "episodes_per_trial": 2},
        100,
        _NAV_POSTERIOR,
    ),
    "pearl-nav2d": ("pearl", "nav2d", _NAV, _PEARL, 40, _NAV_POSTERIOR),
    "pearl-point-robot-dense": ("pearl", "point-robot-dense", {}, _PEARL, 40, {"resolution": 1000}),
    "maml-nav2d": (
        "maml",
        "nav2d",
        _NAV,
        dict(
            num_tasks=10,
            num_trajectories=10,
            hidden_sizes=(32, 32),
            eval_inner_steps=2,
            eval_trajectories=10,
            eval_task_chunk=50,
        ),
        30,
        _NAV_POSTERIOR,
    ),
}


def trained_state(case: str, runs_dir: Path, scale: float):
    """(learner, env, tasks, state, updates): loaded from ``runs_dir/case`` or trained there."""
    learner_name, env_name, env_options, options, updates, _ = CASES[case]
    run_dir = runs_dir / case
    run = RunArgs(env=env_name, env_options=tuple(f"{k}={v}" for k, v in env_options.items()))
    if (run_dir / "run.json").exists():
        _, _, built = read_run(run_dir)
        state, step = restore_latest(run_dir, built.learner)
        return built, state, step
    built = build(learner_name, run, options)
    updates = max(1, round(updates * scale))
    config = TrainConfig(
        num_updates=updates,
        updates_per_chunk=min(10, updates),
        checkpoint_every=updates,
        run_dir=str(run_dir),
        progress=False,
        tensorboard=False,
    )
    metadata = run_json(learner_name, run, config, built.config)
    state, _ = train(built.learner, config, built.config.num_tasks, metadata)
    return built, state, updates


def probe_case(case: str, runs_dir: Path, scale: float, tasks: int, seed: int) -> dict:
    """Trains or loads one case and probes it; returns its JSON-able row."""
    start = time.time()
    built, state, updates = trained_state(case, runs_dir, scale)
    trained = time.time() - start
    _, env_name, env_options, _, _, posterior_options = CASES[case]
    report = probe(
        built.learner,
        state,
        built.env,
        built.tasks.test_tasks(tasks),
        env_name,
        env_options=env_options,
        posterior_options=posterior_options,
        seed=seed,
    )
    print(f"## {case}\n\n{report.to_markdown(max_rows=8)}", flush=True)
    return {
        "case": case,
        "updates": updates,
        "train_seconds": round(trained, 1),
        "probe_seconds": round(time.time() - start - trained, 1),
        "posterior_options": posterior_options,
        "report": json.loads(report.to_json()),
    }


def plot(rows: list[dict], path: Path) -> None:
    """One panel per case: R² of the task (solid) and of the exact posterior mean (dotted)
    against the steps seen, the Bayes-optimal R² for the task dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(rows))
    rows_n = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for ax, row in zip(axes.flat, rows, strict=False):
        report = row["report"]
        x = np.asarray(report["seen"])
        nan = lambda v: np.asarray([np.nan if y is None else y for y in v], float)  # noqa: E731
        ax.plot(x, nan(report["targets"]["task"]["step_r2"]), "-", label="probe: task")
        if "posterior" in report["targets"]:
            posterior = nan(report["targets"]["posterior"]["step_r2"])
            ax.plot(x, posterior, ":", label="probe: exact posterior mean")
        if report["bayes_floor_r2"] is not None:
            ax.plot(x, nan(report["bayes_floor_r2"]), "--", color="k", label="Bayes (exact)")
        ax.set_title(f"{row['case']} ({row['updates']} updates)", fontsize=9)
        ax.set_xlabel("env steps seen")
        ax.set_ylim(-0.2, 1.05)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("R² on held-out tasks")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_markdown(rows: list[dict]) -> str:
    """One line per case: R² at the first, a middle and the last row, and the pooled probe."""
    lines = [
        "| case | updates | rows | task R² (first / mid / last row) | posterior-mean R² (mid / "
        "last) | Bayes R² (mid / last) | pooled task R² |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        r = row["report"]
        task = r["targets"]["task"]["step_r2"]
        post = r["targets"].get("posterior", {}).get("step_r2") or [None] * len(task)
        floor = r["bayes_floor_r2"] or [None] * len(task)
        mid = len(task) // 2
        f = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {row['case']} | {row['updates']} | {len(task)} | {f(task[0])} / {f(task[mid])} / "
            f"{f(task[-1])} | {f(post[mid])} / {f(post[-1])} | {f(floor[mid])} / "
            f"{f(floor[-1])} | {f(r['targets']['task']['pooled_r2'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Runs the chosen cases and writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the updates")
    parser.add_argument("--tasks", type=int, default=200, help="held-out tasks per probe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", default="runs/probes", help="trained runs (reused)")
    args = parser.parse_args()
    meta = run_metadata()
    rows = [
        probe_case(case, Path(args.runs_dir), args.scale, args.tasks, args.seed)
        for case in args.cases
    ]
    stem = f"probes_{device_slug()}"
    details = "\n".join(
        f"## {row['case']}\n\n{_report_markdown(row)}" for row in rows
    )  # per case: the full tables
    markdown = (
        f"# Task-inference probes\n\n{metadata_markdown(meta)}\n"
        f"![R² vs steps](./{stem}.png)\n\n{summary_markdown(rows)}\n{details}"
    )
    write_results(stem, {"meta": meta, "cases": rows}, markdown)
    plot(rows, RESULTS / f"{stem}.png")
    print(f"written to {RESULTS}/{stem}.md, .json, .png")


def _report_markdown(row: dict) -> str:
    from metajax.inference.report import ProbeReport, TargetScores

    data = {k: v for k, v in row["report"].items() if k != "bayes_floor_r2"}
    data["targets"] = {k: TargetScores(**_floats(v)) for k, v in data["targets"].items()}
    return ProbeReport(**_floats(data)).to_markdown(max_rows=8)


def _floats(data: dict) -> dict:
    """JSON nulls back to NaN inside lists (the report's markdown prints them as n/a)."""
    out = {}
    for k, v in data.items():
        if isinstance(v, list):
            v = [float("nan") if x is None else x for x in v]
        out[k] = float("nan") if v is None and k.startswith("pooled") else v
    return out


if __name__ == "__main__":
    main()
