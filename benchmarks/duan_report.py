"""Reports of ``benchmarks.duan_rl2`` runs: the markdown tables and the learning curves.

Curves (held-out return against env steps): one panel per cell, one line per run (its core,
and its file when two runs share a core), the best classic baseline of the cell as a dashed line.
``python -m benchmarks.duan_rl2 --plot`` draws them; ``--plot-runs`` picks the runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import metadata_markdown


def cell_name(cell: dict) -> str:
    """ "bandit n=100, k=5" or "MDP n=10"."""
    if "pulls" in cell:
        return f"bandit n={cell['pulls']}, k={cell['arms']}"
    return f"MDP n={cell['episodes']}"


def collect(paths: list[Path]) -> tuple[dict, dict]:
    """cell -> label -> curve, and cell -> (best classic's name, value)."""
    lines: dict[str, dict[str, list]] = {}
    best: dict[str, tuple[str, float]] = {}
    for path in paths:
        payload = json.loads(Path(path).read_text())
        for cell in payload.get("bandits", []) + payload.get("mdps", []):
            run = cell.get("rl2")
            if not isinstance(run, dict) or not run.get("curve"):
                continue
            by_label = lines.setdefault(cell_name(cell), {})
            label = run["core"] if run["core"] not in by_label else f"{run['core']} ({path.stem})"
            by_label[label] = run["curve"]
            top = best_classic(cell)
            if top is not None:
                best[cell_name(cell)] = top
    return lines, best


def best_classic(cell: dict) -> tuple[str, float] | None:
    """The cell's best stored classic baseline (oracle and random left out): (name, mean)."""
    rows = [r for r in cell.get("baselines") or [] if "mean" in r]
    rows = [r for r in rows if not r["baseline"].startswith(("oracle", "random"))]
    if not rows:
        return None
    top = max(rows, key=lambda r: r["mean"])
    return top["baseline"], top["mean"]


def plot_curves(paths: list[Path], out: Path) -> Path | None:
    """Held-out return vs env steps as PNG at ``out``; None when no run has a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines, best = collect(paths)
    if not lines:
        return None
    fig, axes = plt.subplots(1, len(lines), figsize=(5 * len(lines), 3.8), squeeze=False)
    for ax, (name, by_label) in zip(axes[0], sorted(lines.items()), strict=True):
        for label, curve in sorted(by_label.items()):
            steps = [p["env_steps"] for p in curve]
            ax.plot(steps, [p["return"] for p in curve], marker="o", ms=3, label=label)
        if name in best:
            baseline, value = best[name]
            ax.axhline(value, color="gray", ls="--", lw=1, label=f"{baseline} {value:.1f}")
        ax.set_title(name)
        ax.set_xscale("log")  # short and long runs side by side
        ax.set_xlabel("env steps (log scale)")
        ax.set_ylabel("held-out trial return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _pick(rows: list[dict], name: str, digits: int) -> str:
    found = [r for r in rows if r["baseline"] == name]
    return f"{found[0]['mean']:.{digits}f}" if found else "-"


def _seconds(rl2: dict) -> str:
    """Train seconds of this invocation; a run dir whose checkpoint already held every update
    was only evaluated (its training time is in the results of the run that trained it)."""
    if rl2.get("resumed_from", 0) >= rl2["updates"] and not rl2["curve"]:
        return "0 (evaluated from the checkpoint)"
    return f"{rl2['train_seconds']:.0f}"


def _anneal(config: dict) -> str:
    return " annealed linearly to 0" if config.get("anneal_lr") else ""


def _head(config: dict) -> str:
    head = config.get("head_sizes")
    return f", read-out MLP {'x'.join(map(str, head))}" if head else ""


def markdown(payload: dict) -> str:
    """The bandit and MDP tables of one run (one core)."""
    c = payload["config"]
    scale = c["reward_scale"] if c["reward_scale"] is not None else "1.0 (n = 10) / 0.1 (n >= 100)"
    scale = f"{scale}, MDPs {c['mdp_reward_scale']}"
    lam = c["gae_lambda"] if c["gae_lambda"] is not None else "0.95 (n = 10) / 0.7 (longer, MDPs)"
    lines = [
        f"# RL² ({c['core']}) vs classic baselines (Duan et al. 2016 reproduction)",
        "",
        metadata_markdown(payload["meta"]),
        f"RL²: core {c['core']} width {c['core_size']} ({c['core_layers']} layer(s)"
        f"{', time inputs' if c.get('time_inputs') else ''}"
        f"{', transition inputs' if c.get('transition_inputs') else ''}"
        f"{_head(c)}), "
        f"{c['num_tasks']} tasks per update for n = 10 bandits, {c['num_tasks_long']} for longer "
        f"trials, PPO (lr {c['learning_rate']}{_anneal(c)}, GAE lambda {lam}, reward scale "
        f"{scale}, entropy {c['ent_coef']}, gamma {c.get('gamma', 0.99)}); evaluated on "
        f"{c['test_tasks']} held-out tasks; ± is a 95% interval over tasks. Baselines: "
        f"{c['baselines']} (stored = "
        "results/*_baselines.json; '-' = that file has no such cell).",
        "",
    ]
    if payload["bandits"]:
        lines += [
            "## Bernoulli bandits: total reward per trial",
            "",
            "| n, k | core | RL² (ours) | RL² (paper) | best classic (ours) | gap | Gittins | "
            "UCB1 | TS | OTS | greedy | random | env steps | train s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cell in payload["bandits"]:
            rows, r = cell["baselines"], cell["rl2"]
            best = "-"
            if cell["best_baseline"]:
                best = f"{cell['best_baseline']} {_pick(rows, cell['best_baseline'], 2)}"
            gap = "-" if cell["gap_to_best"] is None else f"{-cell['gap_to_best']:+.1%}"
            named = " | ".join(
                _pick(rows, n, 2)
                for n in ("gittins", "ucb1", "thompson", "optimistic-thompson", "greedy", "random")
            )
            lines.append(
                f"| {cell['pulls']}, {cell['arms']} | {r['core']} | {r['mean']:.2f} ± "
                f"{r['ci95']:.2f} | {r['paper'] or '-'} | {best} | {gap} | {named} | "
                f"{r['env_steps']:.3g} | {_seconds(r)} |"
            )
        lines.append("")
    if payload["mdps"]:
        lines += [
            "## Tabular MDPs (10 states, 5 actions, T = 10): total reward per trial",
            "",
            "| n | core | RL² (ours) | RL² (paper) | greedy (ours) | PSRL (ours) | PSRL (paper) "
            "| OPSRL (paper) | random | env steps | train s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for cell in payload["mdps"]:
            rows, paper, r = cell["baselines"], cell["paper"], cell["rl2"]
            lines.append(
                f"| {cell['episodes']} | {r['core']} | {r['mean']:.1f} ± {r['ci95']:.1f} | "
                f"{paper.get('rl2', '-')} | {_pick(rows, 'greedy', 1)} | {_pick(rows, 'psrl', 1)} "
                f"| {paper.get('psrl', '-')} | {paper.get('opsrl', '-')} | "
                f"{_pick(rows, 'random', 1)} | {r['env_steps']:.3g} | {_seconds(r)} |"
            )
    return "\n".join(lines) + "\n"
