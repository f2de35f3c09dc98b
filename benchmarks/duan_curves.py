"""Learning curves of stored ``benchmarks.duan_rl2`` runs: held-out return against env steps.

One panel per cell, one line per run (its core, and its file when two runs share a core), the
best classic baseline of the cell as a dashed line. ``python -m benchmarks.duan_rl2 --plot``
draws them; ``--plot-runs`` picks the runs.
"""

from __future__ import annotations

import json
from pathlib import Path


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
            rows = [r for r in cell.get("baselines") or [] if "mean" in r]
            rows = [r for r in rows if not r["baseline"].startswith(("oracle", "random"))]
            if rows:
                top = max(rows, key=lambda r: r["mean"])
                best[cell_name(cell)] = (top["baseline"], top["mean"])
    return lines, best


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
        ax.set_xlabel("env steps")
        ax.set_ylabel("held-out trial return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
