"""Several seeds of one learner trained at once, on one device.

``train_seeds`` trains seeds side by side: the trainer's own chunk (``train.make_chunk``, a
``lax.scan`` of the learner's ``train_step``) is vmapped over the seeds' keys inside one
``jax.jit``. Seed s draws exactly the keys ``metajax train --seed s`` draws and starts from
exactly its initial state, so each seed ends where a run of that seed alone would (up to float
rounding). ``metajax sweep`` uses it for grid points that differ only by seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax import distributed
from metajax.errors import ConfigError, check_seed
from metajax.learners.base import Learner, State
from metajax.train import (
    INIT_STREAM,
    TRAIN_STREAM,
    CheckpointStore,
    Chunk,
    MetricsLog,
    make_chunk,
    run_chunks,
    to_host,
)


class SeedRun(NamedTuple):
    """What ``train_seeds`` returns."""

    seeds: tuple[int, ...]
    states: State  # every leaf has a leading [seeds] axis
    metrics: dict[str, np.ndarray]  # [seeds, num_updates]
    chunk_seconds: list[float]  # wall-clock of each chunk (the first includes compilation)
    env_steps: int  # env steps of all seeds together


def seed_keys(seeds: Sequence[int], stream: int) -> jax.Array:
    """``fold_in(key(seed), stream)`` for each seed: the keys ``train`` derives per seed."""
    base = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    return jax.vmap(jax.random.fold_in, (0, None))(base, stream)


def _checked_seeds(num_seeds: int | Sequence[int], num_updates: int, per_chunk: int) -> tuple:
    seeds = tuple(range(num_seeds)) if isinstance(num_seeds, int) else tuple(num_seeds)
    if not seeds:
        raise ConfigError("train_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must differ, got {list(seeds)}")
    for seed in seeds:
        check_seed(seed, "seeds")
    for name, value in (("num_updates", num_updates), ("updates_per_chunk", per_chunk)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    return seeds


def init_seeds(learner: Learner, keys: jax.Array) -> State:
    """Each seed's initial state (``learner.init`` of its key), stacked on a leading [seeds] axis.

    One jitted init per key, not ``vmap(learner.init)``: a vmapped init holds batched QR
    factorizations (orthogonal initializers), and jaxlib's CPU LAPACK kernels split a batch over
    the intra-op thread pool and then wait for it from inside that pool. With two such QRs
    scheduled at once on a 2-thread pool every thread waits and the process hangs for good (RL²
    with the memory core at width 64 and 2 seeds, 2 cores). Each seed also starts from exactly
    the state ``train`` gives it.
    """
    init = jax.jit(learner.init)
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *(init(key) for key in keys))


def _record_seeds(chunk: Chunk, *, learner, logs, chunks, on_chunk) -> None:
    """After a vmapped chunk: each seed's metrics to its log (timing: all seeds together)."""
    chunks.append(chunk)
    extra = chunk.timing(learner.env_steps_per_update)
    for index, log in enumerate(logs):
        log.write(chunk.first_update, {k: v[index] for k, v in chunk.metrics.items()}, extra)
    if on_chunk is not None:
        on_chunk(chunk.last_update, chunk.metrics)


def _save_seeds(stores: list[CheckpointStore], done: int, states: State) -> None:
    host = to_host(states)
    for index, store in enumerate(stores):
        store.save(done, jax.tree.map(lambda x, i=index: x[i], host))


def train_seeds(
    learner: Learner,
    num_seeds: int | Sequence[int],
    num_updates: int,
    *,
    updates_per_chunk: int = 10,
    on_chunk: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    run_dirs: Sequence[Path] | None = None,
    checkpoint_every: int | None = None,
    tensorboard: bool = False,
) -> SeedRun:
    """Trains several seeds of ``learner`` at once: the trainer's chunk vmapped over seed keys.

    Args:
        num_seeds: a count n (seeds 0..n-1) or the seeds themselves.
        num_updates: updates per seed.
        updates_per_chunk: updates per jitted call; metrics come back and are checked for
            NaN between chunks.
        on_chunk: called after each chunk with (updates done, that chunk's metrics
            ``[seeds, length]``).
        run_dirs: one per seed: ``metrics.jsonl`` (as ``train`` writes it) and a checkpoint
            every ``checkpoint_every`` chunks (None: only at the end).

    Raises:
        ConfigError: no seeds, repeated seeds or non-positive sizes.
        TrainingDiverged: a metric of any seed became NaN or inf.
    """
    seeds = _checked_seeds(num_seeds, num_updates, updates_per_chunk)
    states = init_seeds(learner, seed_keys(seeds, INIT_STREAM))
    run_dirs = [Path(d) for d in run_dirs or ()]
    logs = [MetricsLog(d, tensorboard) for d in run_dirs]
    stores = [CheckpointStore(d, 1) for d in run_dirs]
    for log in logs:
        log.truncate_after(0)  # a seed group always starts from scratch
    chunks: list[Chunk] = []
    try:
        states = run_chunks(
            partial(make_chunk, learner, distributed.make_task_mesh(1), over_seeds=True),
            states,
            seed_keys(seeds, TRAIN_STREAM),
            start=0,
            num_updates=num_updates,
            updates_per_chunk=updates_per_chunk,
            on_chunk=partial(
                _record_seeds, learner=learner, logs=logs, chunks=chunks, on_chunk=on_chunk
            ),
            save=partial(_save_seeds, stores) if stores else None,
            checkpoint_every=checkpoint_every or num_updates,
            where=f"the run dirs of seeds {list(seeds)}" if stores else f" of seeds {list(seeds)}",
        )
    finally:
        for item in (*logs, *stores):
            item.close()
    metrics = {k: np.concatenate([c.metrics[k] for c in chunks], axis=1) for k in chunks[0].metrics}
    env_steps = len(seeds) * num_updates * learner.env_steps_per_update
    return SeedRun(seeds, states, metrics, [c.seconds for c in chunks], env_steps)


def seed_state(run: SeedRun, index: int) -> State:
    """The state of the ``index``-th seed of ``run`` (host arrays)."""
    return jax.tree.map(lambda x: x[index], to_host(run.states))
