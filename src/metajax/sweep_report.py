"""The summary of a sweep: one markdown row per run, then mean ± std over seeds per config.

Reads the per-run result dicts that ``metajax.sweep`` writes to ``result.json``.
"""

from __future__ import annotations

import json

import numpy as np


def _cell(shots: dict | None, name: str) -> str:
    if not shots or shots.get(name) is None:
        return "n/a"
    cell = shots[name]
    text = f"{cell['mean']:.3f} ± {cell['ci95']:.3f}"
    return text + (f" [{cell['normalized']:.2f}]" if cell["normalized"] is not None else "")


def _train_return(result: dict) -> str:
    """The last training value of the learner's headline return metric (``return_metric``)."""
    value = result["final_metrics"].get(result.get("return_metric", ""))
    return "n/a" if value is None else f"{value:.3f}"


def _run_row(result: dict, keys: list[str]) -> str:
    shots = result["shots"]
    row = [str(result["point"].get(k)) for k in keys]
    row += [_cell(shots.get("in_distribution"), n) for n in ("0-shot", "1-shot", "few-shot")]
    row.append(_cell(shots.get("out_of_distribution"), "few-shot"))
    report = result["eval"].get("in_distribution")
    row.append(f"{report['total_mean']:.3f} ± {report['total_ci95']:.3f}" if report else "n/a")
    row.append(_train_return(result))
    row += [f"{result[k]:.3g}" for k in ("env_steps", "env_steps_per_s")]
    return "| " + " | ".join(row + [f"{result['wall_s']:.1f}"]) + " |"


def _mean_std(values: list[float]) -> str:
    spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} ± {spread:.3f}" if values else "n/a"


def _seed_rows(results: list[dict], keys: list[str]) -> list[str]:
    """Mean ± std over seeds of the per-seed means, one row per config."""
    others = [k for k in keys if k != "seed"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault(tuple(r["point"].get(k) for k in others), []).append(r)
    header = others + ["seeds", "0-shot", "few-shot", "few-shot normalized", "total"]
    lines = ["", "Over seeds (mean ± std of the per-seed means):", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * (len(others) + 5)]
    for group, members in groups.items():
        row = [str(v) for v in group] + [str(len(members))]
        for name, field in (("0-shot", "mean"), ("few-shot", "mean"), ("few-shot", "normalized")):
            cells = [(m["shots"].get("in_distribution") or {}).get(name) for m in members]
            row.append(_mean_std([c[field] for c in cells if c and c[field] is not None]))
        totals = [m["eval"]["in_distribution"]["total_mean"] for m in members if m["eval"]]
        lines.append("| " + " | ".join(row + [_mean_std(totals)]) + " |")
    return lines


def summary_markdown(spec, results: list[dict], meta: dict) -> str:
    """The sweep's summary: one row per run, then mean ± std over seeds per config."""
    keys = list(spec.grid)
    device = meta["device"]
    columns = ["0-shot", "1-shot", "few-shot", "OOD few-shot", "total", "train return"]
    lines = [
        f"# Sweep `{spec.name}`: {spec.learner}",
        "",
        f"- command: `{meta['command']}`",
        f"- device: {device['device_kind']} ({device['platform']}) x {device['num_devices']}, "
        f"CPU {device['cpu_model']} x {device['cpu_count']}",
        f"- jax {meta['jax_version']}, {meta['date']}",
        f"- base: `{json.dumps(spec.base)}`",
        "",
        "Cells: in-distribution return mean ± 95% CI over held-out tasks [normalized: random 0,"
        " oracle 1]; a shot is one adaptation unit of experience on the task; total: the sum"
        " over all units (an RL² trial's return); train return: the learner's headline return"
        " metric at the last update.",
        "",
        "| " + " | ".join(keys + columns) + " | env steps | env-steps/s | wall s |",
        "|" + "---|" * (len(keys) + 9),
    ]
    lines += [_run_row(r, keys) for r in results]
    if "seed" in keys and len(spec.grid["seed"]) > 1:
        lines += _seed_rows(results, keys)
    return "\n".join(lines) + "\n"
