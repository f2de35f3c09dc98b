"""The probe engine: a learner's task representation on held-out tasks, decoded by ridge probes.

``probe(learner, state, env, tasks, env_name)`` asks ``learner.represent`` for the
representation at every row of one trial per task, computes the exact posterior of the same
history (``metajax.baselines.posteriors``), splits the tasks in halves (``ridge.split_tasks``:
the probes never fit on a task they score), and decodes (a) the true task parameters and (b)
the exact posterior mean, with one probe per row index and one pooled over all rows. Beside
the scores it reports the Bayes floor: the exact posterior's expected squared error at each row.
"""

from __future__ import annotations

import numpy as np

from metajax.baselines import posteriors
from metajax.errors import ConfigError
from metajax.inference import ridge
from metajax.inference.report import ProbeReport, TargetScores


def check_probeable(learner, env_name: str) -> None:
    """ConfigError (one line) unless the learner has a task representation and the family task
    parameters to decode."""
    if learner.represent is None:
        raise ConfigError(
            f"learner '{learner.name}' has no task representation to probe (its represent is None)"
        )
    if env_name not in posteriors.names():
        raise ConfigError(
            f"env '{env_name}' has no task parameters to decode; families with them: "
            f"{', '.join(posteriors.names())}"
        )


def exact_posterior(env_name: str, rep, env_options=None, options=None, chunk: int = 64):
    """The exact posterior of each task's history: mean [N, L + 1, P], expected sq error
    [N, L + 1] (tasks mapped ``chunk`` at a time: grid posteriors hold [chunk, G] buffers)."""
    import jax

    fn = posteriors.posterior_for(env_name, env_options, **(options or {}))
    history = jax.tree.map(lambda x: jax.numpy.swapaxes(x, 0, 1), (rep.transitions, rep.mask))
    trace = jax.jit(
        lambda h: jax.lax.map(lambda one: fn(*one), h, batch_size=chunk)  # [N, L + 1, ...]
    )(history)
    return np.asarray(trace.mean, np.float64), np.asarray(trace.expected_sq_error, np.float64)


def score_target(
    features: np.ndarray,
    target: np.ndarray,
    valid: np.ndarray,
    unit: np.ndarray,
    fit: np.ndarray,
    score: np.ndarray,
    alphas=ridge.ALPHAS,
    folds: int = ridge.FOLDS,
) -> TargetScores:
    """Per-row probes and a pooled probe of ``target [N, S, P]`` from ``features [N, S, F]``,
    fit on the tasks ``fit`` and scored on the tasks ``score`` (rows where ``valid [N, S]``)."""
    num_rows = features.shape[1]
    prediction = np.full(target[score].shape, np.nan)  # [n_score, S, P]
    step_r2, step_mse = [], []
    for s in range(num_rows):
        f, c = fit[valid[fit, s]], valid[score, s]
        if f.size >= 2 and c.any():
            probe = ridge.fit_ridge(features[f, s], target[f, s], alphas=alphas, folds=folds)
            prediction[c, s] = ridge.predict(probe, features[score[c], s])
        step_r2.append(ridge.r2_score(target[score[c], s], prediction[c, s]))
        step_mse.append(ridge.mse(target[score[c], s], prediction[c, s]))
    # POOLED: one probe for every row (folds by task)
    fit_valid = valid[fit]
    groups = np.broadcast_to(fit[:, None], fit_valid.shape)
    pooled = ridge.fit_ridge(
        features[fit][fit_valid],
        target[fit][fit_valid],
        groups=groups[fit_valid],
        alphas=alphas,
        folds=folds,
    )
    pooled_prediction = ridge.predict(pooled, features[score])  # [n_score, S, P]
    score_valid, truth = valid[score], target[score]
    columns = _cols(valid, score)
    pooled_r2 = [ridge.r2_score(truth[m, s], pooled_prediction[m, s]) for s, m in columns]
    pooled_mse = [ridge.mse(truth[m, s], pooled_prediction[m, s]) for s, m in columns]
    units = sorted(set(unit[score][score_valid].tolist()))
    in_unit = [score_valid & (unit[score] == k) for k in units]
    return TargetScores(
        step_r2=step_r2,
        step_mse=step_mse,
        pooled_step_r2=pooled_r2,
        pooled_step_mse=pooled_mse,
        pooled_r2=ridge.r2_score(truth[score_valid], pooled_prediction[score_valid]),
        pooled_mse=ridge.mse(truth[score_valid], pooled_prediction[score_valid]),
        unit_r2=[ridge.r2_score(truth[m], prediction[m]) for m in in_unit],
        unit_mse=[ridge.mse(truth[m], prediction[m]) for m in in_unit],
    )


def _cols(valid: np.ndarray, score: np.ndarray):
    """(row index s, mask of the scored tasks valid at s) for every row."""
    return [(s, valid[score, s]) for s in range(valid.shape[1])]


def _floor(theta, post_mean, sq_error, valid, unit, score):
    """The exact posterior's expected and realized squared error per row and per unit, and the
    task parameters' total variance, on the scored tasks."""
    expected, realized = [], []
    for s, m in _cols(valid, score):
        expected.append(float(np.mean(sq_error[score[m], s])) if m.any() else float("nan"))
        realized.append(ridge.mse(theta[score[m]], post_mean[score[m], s]))
    score_valid = valid[score]
    units = sorted(set(unit[score][score_valid].tolist()))
    unit_floor = [float(np.mean(sq_error[score][score_valid & (unit[score] == k)])) for k in units]
    variance = float(np.sum(np.var(theta[score], axis=0)))
    return expected, realized, unit_floor, units, variance


def probe(
    learner,
    state,
    env,
    tasks,
    env_name: str,
    *,
    key=None,
    env_options: dict | None = None,
    posterior_options: dict | None = None,
    seed: int = 0,
    alphas=ridge.ALPHAS,
    folds: int = ridge.FOLDS,
) -> ProbeReport:
    """Probes ``learner``'s task representation (``state``) on the held-out ``tasks`` (a batch
    of EnvParams) of ``env_name``; returns a ``ProbeReport``.

    Args:
        env: the env the learner was built on (unused; kept for the evaluate-like signature).
        key: the representation's rollout key (default ``jax.random.key(seed)``).
        env_options: the env's options, read by the exact posterior (arms=..., ...).
        posterior_options: ``posterior_for``'s options (e.g. a coarser ``resolution``).
        seed: seeds the key and the task split.
    """
    import jax

    del env
    check_probeable(learner, env_name)
    key = jax.random.key(seed) if key is None else key
    rep = jax.jit(learner.represent)(state, key, tasks)
    theta = np.asarray(posteriors.task_parameters(env_name, tasks), np.float64)  # [N, P]
    features = np.asarray(rep.features, np.float64)
    valid, unit, seen = (np.asarray(x) for x in (rep.valid, rep.unit, rep.seen))
    num_tasks = features.shape[0]
    fit, score = ridge.split_tasks(num_tasks, seed)
    targets = {"task": np.broadcast_to(theta[:, None], (*valid.shape, theta.shape[-1]))}
    floor = None
    try:
        post_mean, sq_error = exact_posterior(env_name, rep, env_options, posterior_options)
        post_mean, sq_error = post_mean[:, seen], sq_error[:, seen]  # [N, S, P], [N, S]
        targets["posterior"] = post_mean
        floor = _floor(theta, post_mean, sq_error, valid, unit, score)
    except ConfigError as error:  # e.g. cheetah-vel without x_velocity: decode the task only
        print(f"metajax probe: no exact posterior ({error}); decoding the task parameters only")
    scores = {
        name: score_target(features, y, valid, unit, fit, score, alphas, folds)
        for name, y in targets.items()
    }
    return ProbeReport.build(
        learner, env_name, features.shape[-1], seen, fit, score, scores, floor, theta, valid, unit
    )
