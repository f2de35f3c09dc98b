"""Task inference: how well, and how fast, a learner's representation knows its task.

``probe(learner, state, env, tasks, env_name)`` decodes a learner's task representation
(``Learner.represent``: RL²'s memory, PEARL's q(z | c), MAML's adapted parameters) on held-out
tasks with ridge probes, fit on half of the tasks and scored on the other half, against the true
task parameters and the exact posterior mean (``metajax.baselines.posteriors``), beside the
exact posterior's expected error (the Bayes floor). ``probe_run(run_dir)`` does it for a trained
run and writes probe.md, probe.json and probe.png (``metajax probe RUN_DIR``).
"""

from metajax.inference.probe import check_probeable, exact_posterior, probe, score_target
from metajax.inference.report import ProbeReport, TargetScores, plot_probe
from metajax.inference.ridge import fit_ridge, predict, r2_score, split_tasks
from metajax.inference.run import load_run, probe_run, read_run, restore_latest, write_report

__all__ = [
    "ProbeReport",
    "TargetScores",
    "check_probeable",
    "exact_posterior",
    "fit_ridge",
    "load_run",
    "plot_probe",
    "predict",
    "probe",
    "probe_run",
    "r2_score",
    "read_run",
    "restore_latest",
    "score_target",
    "split_tasks",
    "write_report",
]
