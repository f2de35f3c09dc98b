"""Few-shot evaluation, Performance(K), in one format for every learner.

A learner's ``evaluate(state, key, tasks)`` gives the return on each held-out task after each
adaptation unit: episode k of a trial (RL², PEARL) or k inner gradient steps (MAML family).
``evaluate_learner`` turns that into a report: per unit, the mean over tasks with a 95%
interval and the score normalized between a random policy (0) and an oracle that knows the
task (1), where the env provides its oracle value.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metajax import rollout
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution, num_tasks
from metajax.learners.base import Learner, State


@dataclass
class AdaptationReport:
    """Performance after each adaptation unit on a set of held-out tasks."""

    learner: str
    env: str
    unit: str  # "episode" or "gradient step"
    steps: list[int]  # the adaptation index of each column (episode 1..K or step 0..K)
    mean: list[float]
    ci95: list[float]  # half-width of the 95% interval of the mean
    random: float  # a uniformly random policy's mean episode return on the same tasks
    oracle: float | None  # the task-knowing oracle's mean episode return, if known
    normalized: list[float] | None  # (mean - random) / (oracle - random)
    num_tasks: int
    total_mean: float  # mean over tasks of the summed returns (an RL² trial's total)
    total_ci95: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def to_markdown(self) -> str:
        """A markdown table: one row per adaptation unit."""
        label = "episode" if self.unit == "episode" else "grad steps"
        lines = [
            f"**{self.learner}** on **{self.env}**, {self.num_tasks} held-out tasks",
            "",
            f"| {label} | return (mean ± 95% CI) | normalized |",
            "|---|---|---|",
        ]
        for i, step in enumerate(self.steps):
            norm = "n/a" if self.normalized is None else f"{self.normalized[i]:.3f}"
            lines.append(f"| {step} | {self.mean[i]:.3f} ± {self.ci95[i]:.3f} | {norm} |")
        oracle = "unknown" if self.oracle is None else f"{self.oracle:.3f}"
        lines += [
            "",
            f"total over units: {self.total_mean:.3f} ± {self.total_ci95:.3f}; "
            f"random policy per episode: {self.random:.3f}; oracle per episode: {oracle}",
        ]
        return "\n".join(lines)


def mean_and_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean over axis 0 and the half-width of its normal 95% interval."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    std = values.std(axis=0, ddof=1) if n > 1 else np.zeros_like(values[0])
    return values.mean(axis=0), 1.96 * std / math.sqrt(n)


def random_episode_returns(env: MetaEnv, tasks: EnvParams, key: jax.Array) -> jax.Array:
    """Return of one episode of a uniformly random policy on each task: ``[num_tasks]``."""
    n = num_tasks(tasks)
    action_space = env.action_space()

    def policy(carry, obs, first, keys):
        return carry, jax.vmap(action_space.sample)(keys), {}

    key_reset, key_run = jax.random.split(key)
    start = rollout.reset(env, tasks, jax.random.split(key_reset, n))
    _, transitions = rollout.rollout(
        env, policy, start, tasks, jax.random.split(key_run, n), env.horizon
    )
    return rollout.episode_returns(transitions, 1)[:, 0]


def evaluate_learner(
    learner: Learner,
    state: State,
    env: MetaEnv,
    tasks: EnvParams,
    key: jax.Array,
    env_name: str = "",
) -> AdaptationReport:
    """Runs ``learner.evaluate`` on ``tasks`` and summarizes it against random and oracle."""
    key_learner, key_random = jax.random.split(key)
    returns = np.asarray(jax.jit(learner.evaluate)(state, key_learner, tasks))  # [n, units]
    mean, ci = mean_and_ci95(returns)
    total_mean, total_ci = mean_and_ci95(returns.sum(axis=1))
    random = float(
        jnp.mean(jax.jit(random_episode_returns, static_argnums=0)(env, tasks, key_random))
    )
    oracle_values = env.oracle_episode_return(tasks)
    oracle = None if oracle_values is None else float(jnp.mean(oracle_values))
    normalized = None
    if oracle is not None and abs(oracle - random) > 1e-8:
        normalized = [float((m - random) / (oracle - random)) for m in mean]
    first = 1 if learner.adaptation_unit == "episode" else 0
    return AdaptationReport(
        learner=learner.name,
        env=env_name or env.name,
        unit=learner.adaptation_unit,
        steps=list(range(first, first + returns.shape[1])),
        mean=[float(m) for m in mean],
        ci95=[float(c) for c in ci],
        random=random,
        oracle=oracle,
        normalized=normalized,
        num_tasks=int(returns.shape[0]),
        total_mean=float(total_mean),
        total_ci95=float(total_ci),
    )


def evaluate_splits(
    learner: Learner,
    state: State,
    env: MetaEnv,
    tasks: TaskDistribution,
    eval_tasks: int,
    key: jax.Array,
    env_name: str = "",
) -> dict[str, AdaptationReport]:
    """``evaluate_learner`` on ``eval_tasks`` held-out tasks ("in_distribution") and, where the
    distribution declares a shifted test range, on as many of those ("out_of_distribution")."""
    reports = {
        "in_distribution": evaluate_learner(
            learner, state, env, tasks.test_tasks(eval_tasks), key, env_name
        )
    }
    ood = tasks.ood_test_tasks(eval_tasks)
    if ood is not None:
        reports["out_of_distribution"] = evaluate_learner(learner, state, env, ood, key, env_name)
    return reports


def plot_report(reports: dict[str, AdaptationReport], path) -> None:
    """A PNG of the adaptation curve(s): mean return with its 95% band per adaptation unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for split, report in reports.items():
        mean, ci = np.array(report.mean), np.array(report.ci95)
        ax.plot(report.steps, mean, marker="o", label=split.replace("_", " "))
        ax.fill_between(report.steps, mean - ci, mean + ci, alpha=0.25)
        if report.oracle is not None:
            ax.axhline(report.oracle, linestyle="--", color="gray", linewidth=1)
        ax.axhline(report.random, linestyle=":", color="gray", linewidth=1)
    first = next(iter(reports.values()))
    ax.set_xlabel(first.unit)
    ax.set_ylabel("return")
    ax.set_title(f"{first.learner} on {first.env} (dashed: oracle, dotted: random)", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def shot_columns(report: AdaptationReport) -> dict[str, int | None]:
    """Column index of the 0-shot, 1-shot and few-shot results of ``report`` (None if absent).

    A "shot" is one adaptation unit of experience on the task before the measured return:
    episode k of a trial (RL², PEARL) follows k - 1 shots; k gradient steps (MAML family) are k
    shots. Few-shot is the last column (the most experience the report holds).
    """
    shots = [step - 1 if report.unit == "episode" else step for step in report.steps]
    columns: dict[str, int | None] = {
        "0-shot": shots.index(0) if 0 in shots else None,
        "1-shot": shots.index(1) if 1 in shots else None,
        "few-shot": len(shots) - 1 if shots and shots[-1] > 1 else None,
    }
    return columns


def shot_summary(report: AdaptationReport) -> dict[str, dict | None]:
    """0-, 1- and few-shot mean, 95% half-width and normalized score of ``report``."""
    shots = [step - 1 if report.unit == "episode" else step for step in report.steps]
    summary: dict[str, dict | None] = {}
    for name, column in shot_columns(report).items():
        if column is None:
            summary[name] = None
            continue
        summary[name] = {
            "shots": shots[column],
            "mean": report.mean[column],
            "ci95": report.ci95[column],
            "normalized": None if report.normalized is None else report.normalized[column],
        }
    return summary


def shots_markdown(reports: dict[str, AdaptationReport]) -> str:
    """A compact markdown table: one row per split, 0-shot / 1-shot / few-shot side by side.

    Each cell is "mean ± 95% CI" with the normalized score in brackets where the oracle is
    known; the few-shot header names its number of shots.
    """
    summaries = {split: shot_summary(report) for split, report in reports.items()}
    few = {s["few-shot"]["shots"] for s in summaries.values() if s["few-shot"] is not None}
    few_label = f"few-shot ({next(iter(few))} shots)" if len(few) == 1 else "few-shot"
    lines = [f"| split | 0-shot | 1-shot | {few_label} |", "|---|---|---|---|"]
    for split, summary in summaries.items():
        cells = []
        for name in ("0-shot", "1-shot", "few-shot"):
            cell = summary[name]
            if cell is None:
                cells.append("n/a")
                continue
            text = f"{cell['mean']:.3f} ± {cell['ci95']:.3f}"
            if cell["normalized"] is not None:
                text += f" [{cell['normalized']:.2f}]"
            if name == "few-shot" and len(few) > 1:
                text += f" ({cell['shots']} shots)"
            cells.append(text)
        lines.append(f"| {split.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
