"""A probe's results: ``ProbeReport`` (JSON, markdown) and its figure (R² and MSE vs row, with
the exact posterior's Bayes floor drawn in)."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np

TARGET_TITLES = {"task": "true task parameters", "posterior": "exact posterior mean"}


@dataclass
class TargetScores:
    """How well one target is decoded on the scored tasks."""

    step_r2: list[float]  # [S] the probe fit at row s, scored at row s
    step_mse: list[float]  # [S] its mean squared error (summed over parameters)
    pooled_step_r2: list[float]  # [S] one probe fit on every row, scored at row s
    pooled_step_mse: list[float]  # [S]
    pooled_r2: float  # the pooled probe over every scored row
    pooled_mse: float
    unit_r2: list[float]  # [K] the per-row probes over the rows of adaptation unit k
    unit_mse: list[float]  # [K]


@dataclass
class ProbeReport:
    """Decoding quality of a learner's task representation on held-out tasks."""

    learner: str
    env: str
    adaptation_unit: str  # "episode" or "gradient step"
    num_tasks: int
    features: int  # width of the representation
    seen: list[int]  # [S] history steps seen by row s
    units: list[int]  # [K] adaptation units present
    fit_tasks: list[int]  # indices of the held-out tasks the probes fit on
    score_tasks: list[int]  # the disjoint half they are scored on
    targets: dict[str, TargetScores]  # "task" (true parameters), "posterior" (exact mean)
    task_variance: float  # total variance of the task parameters over the scored tasks
    bayes_floor: list[float] | None  # [S] exact posterior's expected squared error
    posterior_mse: list[float] | None  # [S] its realized squared error against the truth
    unit_floor: list[float] | None  # [K] expected squared error over the rows of unit k

    @classmethod
    def build(cls, learner, env, width, seen, fit, score, scores, floor, theta, valid, unit):
        """From ``probe``'s pieces (``floor``: ``probe._floor``'s tuple or None)."""
        score_valid = valid[score]
        units = sorted(set(unit[score][score_valid].tolist()))
        expected, realized, unit_floor = (None, None, None) if floor is None else floor[:3]
        return cls(
            learner=learner.name,
            env=env,
            adaptation_unit=learner.adaptation_unit,
            num_tasks=int(valid.shape[0]),
            features=int(width),
            seen=[int(s) for s in seen],
            units=[int(k) for k in units],
            fit_tasks=[int(i) for i in fit],
            score_tasks=[int(i) for i in score],
            targets=scores,
            task_variance=float(np.sum(np.var(theta[score], axis=0))),
            bayes_floor=expected,
            posterior_mse=realized,
            unit_floor=unit_floor,
        )

    def floor_r2(self) -> list[float] | None:
        """[S] the R² of the exact posterior mean for the task: 1 - floor / task variance."""
        if self.bayes_floor is None or self.task_variance <= 0:
            return None
        return [1.0 - f / self.task_variance for f in self.bayes_floor]

    def to_json(self) -> str:
        """The report as JSON (NaN written as null)."""
        data = dataclasses.asdict(self)
        data["bayes_floor_r2"] = self.floor_r2()
        return json.dumps(_nulls(data), indent=2)

    def to_markdown(self, max_rows: int = 12) -> str:
        """Tables: decoding by adaptation unit, then at a few rows (steps)."""
        unit = self.adaptation_unit
        head = (
            f"**{self.learner}** on **{self.env}**: ridge probes of a {self.features}-wide task "
            f"representation, fit on {len(self.fit_tasks)} held-out tasks, scored on the other "
            f"{len(self.score_tasks)}; total variance of the task parameters "
            f"{self.task_variance:.4g}.\n"
        )
        pooled = ", ".join(
            f"{TARGET_TITLES[name]} R² {_fmt(t.pooled_r2)} (MSE {_fmt(t.pooled_mse)})"
            for name, t in self.targets.items()
        )
        lines = [head, f"Pooled probe (one for every row): {pooled}.\n"]
        columns = [f"R² {n}" for n in self.targets] + [f"MSE {n}" for n in self.targets]
        floor = self.bayes_floor is not None
        columns += ["Bayes floor (MSE)", "floor R²"] if floor else []
        lines.append(f"| {unit} | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        floor_r2 = self.floor_r2() or []
        for i, k in enumerate(self.units):
            cells = [_fmt(t.unit_r2[i]) for t in self.targets.values()]
            cells += [_fmt(t.unit_mse[i]) for t in self.targets.values()]
            if floor:
                variance = self.task_variance
                ratio = 1.0 - self.unit_floor[i] / variance if variance > 0 else None
                cells += [_fmt(self.unit_floor[i]), _fmt(ratio)]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines.append("\nAt single rows (steps seen -> per-row probe):\n")
        lines.append("| row | steps seen | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 2) + "|")
        for s in _row_sample(len(self.seen), max_rows):
            cells = [_fmt(t.step_r2[s]) for t in self.targets.values()]
            cells += [_fmt(t.step_mse[s]) for t in self.targets.values()]
            if floor:
                cells += [_fmt(self.bayes_floor[s]), _fmt(floor_r2[s] if floor_r2 else None)]
            lines.append(f"| {s} | {self.seen[s]} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _row_sample(num_rows: int, max_rows: int) -> list[int]:
    if num_rows <= max_rows:
        return list(range(num_rows))
    return sorted(set(np.round(np.geomspace(1, num_rows, max_rows - 1)).astype(int) - 1) | {0})


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"


def _nulls(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nulls(v) for v in value]
    return value


def plot_probe(reports: list[ProbeReport] | ProbeReport, path, labels=None) -> None:
    """R² (left) and MSE (right) of the per-row probes against the steps seen, one line per
    report and target; the Bayes floor (the exact posterior's expected error) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [reports] if isinstance(reports, ProbeReport) else reports
    labels = labels or [f"{r.learner} on {r.env}" for r in reports]
    fig, (ax_r2, ax_mse) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (report, label) in enumerate(zip(reports, labels, strict=True)):
        color = f"C{i}"
        x = np.maximum(np.asarray(report.seen), 1) if len(reports) > 1 else report.seen
        for name, style in (("task", "-"), ("posterior", ":")):
            if name in report.targets:
                t = report.targets[name]
                text = f"{label}: {TARGET_TITLES[name]}"
                ax_r2.plot(x, t.step_r2, style, color=color, label=text)
                ax_mse.plot(x, t.step_mse, style, color=color)
        if report.bayes_floor is not None:
            ax_r2.plot(x, report.floor_r2(), "--", color=color, alpha=0.6, label=f"{label}: Bayes")
            ax_mse.plot(x, report.bayes_floor, "--", color=color, alpha=0.6)
    unit = "steps seen" if reports[0].adaptation_unit == "episode" else "env steps seen"
    for ax, title in ((ax_r2, "R² of the probe (held-out tasks)"), (ax_mse, "squared error")):
        ax.set_xlabel(unit)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if len(reports) > 1:
            ax.set_xscale("log")
    ax_r2.set_ylim(-0.2, 1.05)
    ax_mse.set_yscale("log")
    ax_r2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
