"""One table of the short RL² tuning runs on Duan's cells (stored ``benchmarks.duan_rl2`` runs).

Every run in ``results/duan_tuning/`` is a ``python -m benchmarks.duan_rl2 ... --stem NAME``
result moved there; this script lists each run's settings, its held-out curve and final return
beside the best classic baseline, so the defaults of ``benchmarks.duan_rl2`` can be traced to
the runs that chose them.

    python -m benchmarks.duan_tuning            # writes results/duan_rl2_tuning_<device>.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks import common
from benchmarks.common import device_slug, metadata_markdown, run_metadata, write_results
from benchmarks.duan_report import best_classic, cell_name
from benchmarks.duan_rl2 import cell_ppo

# what a row's settings do not show (the code the run used)
NOTES = {
    "e7_lru_rs01": "LRU eigenvalue ring |lambda| in [0.4, 0.99], phases up to 2 pi (before e10)",
    "e10_lru_longring": "LRU ring |lambda| in [0.9, 0.999], phases up to pi / 10 (now the default)",
}
KNOBS = ("core", "core_size", "learning_rate", "gamma", "gae_lambda", "ent_coef", "reward_scale")
KNOBS += ("num_tasks_long", "num_minibatches", "anneal_lr", "time_inputs", "transition_inputs")
KNOBS += ("head_sizes",)


def load_runs(folder) -> list[dict]:
    """Each stored run's settings, command, curve and final figure (bandit or MDP cell)."""
    runs = []
    for path in sorted(folder.glob("*.json")):
        stored = json.loads(path.read_text())
        config = stored["config"]
        for cell in stored.get("bandits", []) + stored.get("mdps", []):
            name = cell_name(cell)
            bandit = "pulls" in cell  # MDP trials take the long bandit cells' lambda
            scale, lam = cell_ppo(argparse.Namespace(**config), not bandit or cell["pulls"] > 10)
            if not bandit:
                scale = config["mdp_reward_scale"]
            runs.append(
                {
                    "run": path.stem,
                    "cell": name,
                    "settings": {k: config.get(k) for k in KNOBS}
                    | {"reward_scale": scale, "gae_lambda": lam},
                    "clip_value": config.get("clip_value", True),
                    "command": stored["meta"]["command"],
                    "date": stored["meta"]["date"],
                    "return": cell["rl2"]["mean"],
                    "ci95": cell["rl2"]["ci95"],
                    "env_steps": cell["rl2"]["env_steps"],
                    "train_seconds": cell["rl2"]["train_seconds"],
                    "curve": [round(p["return"], 1) for p in cell["rl2"]["curve"]],
                    "best_classic": _best_classic(cell),
                }
            )
    return runs


def core_text(settings: dict) -> str:
    """``core width`` and what the run added: ``+ time``, ``+ s`` (transition inputs),
    ``+ head 128`` (read-out layers)."""
    text = f"{settings['core']} {settings['core_size']}"
    text += " + time" if settings["time_inputs"] else ""
    text += " + s" if settings["transition_inputs"] else ""
    head = settings["head_sizes"]
    return text + (f" + head {'x'.join(map(str, head))}" if head else "")


def _best_classic(cell: dict) -> str:
    top = best_classic(cell)
    return "-" if top is None else f"{top[0]} {top[1]:.1f}"


def _lr(settings: dict) -> str:
    """The learning rate, ``lr → 0`` where it was annealed over the run, ``/M`` with M
    minibatches where that was not the default 4."""
    text = f"{settings['learning_rate']}" + (" → 0" if settings["anneal_lr"] else "")
    mb = settings["num_minibatches"]
    return text + (f" /{mb}" if mb not in (None, 4) else "")


def markdown(runs: list[dict], meta: dict) -> str:
    lines = [
        "# RL² tuning runs on Duan's cells (short budgets)",
        "",
        metadata_markdown(meta),
        "",
        "Each row is one stored `benchmarks.duan_rl2` run (its command below the table); "
        "return = total reward per trial on held-out tasks (± 95% CI), curve = held-out "
        "return at evenly spaced points of training (200 tasks). The machine was shared with "
        "other runs, so train seconds are not comparable between rows. Core: + time = time "
        "inputs, + s = transition inputs (the observation the last action was taken in), "
        "+ head = a read-out MLP over [core output, embedding] before the heads.",
        "",
        "| run | cell | core | tasks | lr | gamma | GAE lambda | entropy | reward scale "
        "| value clip | env steps | return | best classic | curve |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = r["settings"]
        lines.append(
            f"| {r['run']} | {r['cell']} | {core_text(s)} "
            f"| {s['num_tasks_long'] or 256} | {_lr(s)} "
            f"| {s['gamma'] if s['gamma'] is not None else 0.99} | {s['gae_lambda']} "
            f"| {s['ent_coef']} | {s['reward_scale']} | {r['clip_value']} "
            f"| {r['env_steps']:.2g} | {r['return']:.2f} ± {r['ci95']:.2f} | {r['best_classic']} "
            f"| {', '.join(map(str, r['curve']))} |"
        )
    lines += ["", "Notes:", ""] + [f"- {name}: {note}" for name, note in NOTES.items()]
    lines += [
        "- before these runs the defaults were reward scale 1.0 and GAE lambda 0.95: "
        "63.8 after 7.7e6 env steps (GRU; results/duan_rl2_cpu.md), 51.2 after 3e7 (LRU, "
        "old ring; results/duan_rl2_lru_n100k5_cpu.md)",
    ]
    lines += ["", "Commands:", ""] + [f"- {r['run']}: `{r['command']}`" for r in runs]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=str(common.RESULTS / "duan_tuning"))
    args = parser.parse_args()
    runs = load_runs(Path(args.folder))
    meta = run_metadata()
    payload = {"meta": meta, "runs": runs}
    json_path, md_path = write_results(
        f"duan_rl2_tuning_{device_slug()}", payload, markdown(runs, meta)
    )
    print(markdown(runs, meta))
    print(f"written to {json_path} and {md_path}")


if __name__ == "__main__":
    main()
