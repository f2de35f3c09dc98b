"""The learner-agnostic trainer: jitted chunks of updates, logs, checkpoints, exact resume.

One chunk is a jitted ``lax.scan`` of ``updates_per_chunk`` calls of the learner's
``train_step`` (sharded over the task axis when there are several devices). Between chunks the
host writes metrics (JSONL and TensorBoard) in the run directory, advances the progress bar,
checks for NaN and, at the first chunk end at or after every ``checkpoint_every`` updates, saves
an orbax checkpoint of the state and the step. The key of update t is ``fold_in(train_key, t)``,
so a resumed run draws exactly the keys an uninterrupted run would have drawn.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from metajax import distributed
from metajax.envs.core import tag_id
from metajax.errors import ConfigError, check_seed
from metajax.learners.base import Learner, State

INIT_STREAM, TRAIN_STREAM, EVAL_STREAM = map(tag_id, ("train/init", "train/updates", "train/eval"))


@dataclass(frozen=True)
class TrainConfig:
    """How long to train and how to log, checkpoint and resume."""

    run_dir: str = "runs/default"  # folder of checkpoints, metrics.jsonl, run.json, eval.*
    num_updates: int = 200  # training updates (train_step calls) in all
    updates_per_chunk: int = 10  # updates per jitted call; logs and checks between chunks
    checkpoint_every: int = 50  # updates between checkpoints (at the first chunk end past each)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    seed: int = 0  # seed of the parameter init and the training keys
    resume: bool = False  # continue from the latest checkpoint in run_dir
    num_devices: int | None = None  # devices of the task mesh; None = all
    tensorboard: bool = True  # also write TensorBoard event files
    progress: bool = True  # show a progress bar

    def validate(self) -> None:
        """Raises ConfigError for impossible values."""
        for name in ("num_updates", "updates_per_chunk", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_seed(self.seed)


class TrainingDiverged(RuntimeError):
    """A loss or metric became NaN; the last good checkpoint is kept."""


def _is_primary() -> bool:
    return jax.process_index() == 0


def to_host(tree) -> Any:
    """NumPy copies of (replicated or fully addressable) arrays, on every process."""

    def fetch(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree.map(fetch, tree)


def place(tree, mesh: jax.sharding.Mesh, specs=None):
    """Puts host values on the mesh (replicated, or sharded as ``specs``); multi-host safe."""
    specs = distributed.partition_like(tree) if specs is None else specs

    def put(x, spec):
        x = np.asarray(x)
        sharding = jax.sharding.NamedSharding(mesh, spec)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree, specs)


class CheckpointStore:
    """Orbax checkpoints of ``{state, step}`` under ``run_dir/checkpoints``."""

    def __init__(self, run_dir: Path, keep: int):
        self.directory = (run_dir / "checkpoints").absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: State) -> None:
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, like: State) -> State:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as error:  # orbax raises many types for damaged files
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ConfigError(
                f"checkpoint {self.directory}/{step} cannot be restored "
                f"({type(error).__name__}: {first_line[:200]})"
            ) from None

    def close(self) -> None:
        self.manager.close()


def _update_of(line: str) -> int | None:
    """The update of a metrics line; None for a blank or cut-off one (a killed run's last)."""
    try:
        return json.loads(line)["update"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


class MetricsLog:
    """JSONL metrics (one line per update) and optional TensorBoard scalars."""

    def __init__(self, run_dir: Path, tensorboard: bool):
        self.path = run_dir / "metrics.jsonl"
        self.writer = None
        if tensorboard and _is_primary():
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drops lines past ``step`` (written after the checkpoint a resume starts from)."""
        if not self.path.exists() or not _is_primary():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if _update_of(line) is not None and _update_of(line) <= step
        ]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, first_update: int, metrics: dict[str, np.ndarray], extra: dict) -> None:
        if not _is_primary():
            return
        count = len(next(iter(metrics.values())))
        with self.path.open("a") as f:
            for i in range(count):
                row = {"update": first_update + i + 1}
                row.update({k: float(v[i]) for k, v in metrics.items()})
                if i == count - 1:
                    row.update(extra)
                f.write(json.dumps(row) + "\n")
                if self.writer is not None:
                    for k, v in row.items():
                        if k != "update":
                            self.writer.add_scalar(k, v, row["update"])
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _progress(enabled: bool, total: int, start: int):
    if not enabled or not _is_primary():
        return None
    from rich import progress as rp

    bar = rp.Progress(
        rp.TextColumn("[bold]train"),
        rp.BarColumn(),
        rp.MofNCompleteColumn(),
        rp.TextColumn("{task.fields[status]}"),
        rp.TimeRemainingColumn(),
    )
    bar.start()
    bar.add_task("train", total=total, completed=start, status="compiling...")
    return bar


_CHUNKS: dict[tuple, Callable] = {}


def _chunk(step_fn: Callable, length: int, state, train_key, first_update):
    """``length`` updates in one ``lax.scan``; update t uses ``fold_in(train_key, t)``."""

    def one(state, index):
        return step_fn(state, jax.random.fold_in(train_key, first_update + index))

    return jax.lax.scan(one, state, jnp.arange(length))


def make_chunk(
    learner: Learner, mesh: jax.sharding.Mesh, length: int, *, over_seeds: bool = False
) -> Callable:
    """``chunk(state, train_key, first_update) -> (state, metrics [length])``, jitted.

    ``length`` updates run in one ``lax.scan``; update t uses ``fold_in(train_key, t)``.
    With ``over_seeds`` the chunk is vmapped over states and train keys (a leading [seeds]
    axis; ``first_update`` shared). Chunks are cached per learner, mesh and length, so repeated
    ``train`` calls (a resume in the same process, a notebook, a sweep) compile once.
    """
    cache_key = (learner.make_train_step, learner.state_partition, mesh, length, over_seeds)
    if cache_key in _CHUNKS:
        return _CHUNKS[cache_key]
    step_fn = distributed.shard_step(learner.make_train_step, mesh, learner.state_partition)
    chunk = partial(_chunk, step_fn, length)
    if over_seeds:
        chunk = jax.vmap(chunk, in_axes=(0, 0, None))
    _CHUNKS[cache_key] = jax.jit(chunk, donate_argnums=0)
    return _CHUNKS[cache_key]


class Chunk(NamedTuple):
    """One finished chunk, as ``run_chunks`` hands it to its ``on_chunk``."""

    first_update: int  # updates done before this chunk
    metrics: dict[str, np.ndarray]  # [length] (or [seeds, length] for a vmapped chunk)
    seconds: float  # wall-clock of the call (the first includes compilation)

    @property
    def last_update(self) -> int:
        return self.first_update + next(iter(self.metrics.values())).shape[-1]

    def timing(self, env_steps_per_update: int) -> dict[str, float]:
        """``env_steps_per_s`` (all seeds together) and ``chunk_seconds``."""
        updates = next(iter(self.metrics.values())).size
        rate = updates * env_steps_per_update / self.seconds
        return {"env_steps_per_s": rate, "chunk_seconds": self.seconds}


def run_chunks(
    chunk_for: Callable[[int], Callable],
    state: State,
    train_key: jax.Array,
    *,
    start: int,
    num_updates: int,
    updates_per_chunk: int,
    on_chunk: Callable[[Chunk], None],
    save: Callable[[int, State], None] | None = None,
    checkpoint_every: int = 1,
    where: str = "",
) -> State:
    """Runs updates ``start+1..num_updates`` in chunks of ``chunk_for(length)``; returns the state.

    After each chunk: NaN check, then ``on_chunk`` (logs, progress), then ``save`` at the first
    chunk end at or after every multiple of ``checkpoint_every`` updates and after the last
    update. ``where`` names the checkpoints in the NaN message.

    Raises:
        TrainingDiverged: a metric became NaN or inf; nothing of that chunk is kept.
    """
    done, last_saved = start, start
    while done < num_updates:
        length = min(updates_per_chunk, num_updates - done)
        tic = time.perf_counter()
        new_state, metrics = chunk_for(length)(state, train_key, jnp.int32(done))
        metrics = to_host(metrics)
        chunk = Chunk(done, metrics, time.perf_counter() - tic)
        bad = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
        if bad:
            kept = f"; training stopped, the last good checkpoint (update {last_saved}) is kept"
            raise TrainingDiverged(
                f"NaN or inf in {', '.join(bad)} during updates {done + 1}..{done + length}"
                + (f"{kept} in {where}" if save is not None else where)
            )
        state = new_state
        on_chunk(chunk)
        done = chunk.last_update
        crossed = done // checkpoint_every > chunk.first_update // checkpoint_every
        if save is not None and (crossed or done >= num_updates):
            save(done, state)
            last_saved = done
    return state


def _report(
    chunk: Chunk,
    learner: Learner,
    log: MetricsLog,
    bar,
    history: list[dict],
    on_chunk: Callable[[int, dict], None] | None,
) -> None:
    """The host's work after one chunk of ``train``: metrics, history, progress bar, callback."""
    extra = chunk.timing(learner.env_steps_per_update)
    log.write(chunk.first_update, chunk.metrics, extra)
    done = chunk.last_update
    last = {k: float(v[-1]) for k, v in chunk.metrics.items()} | extra | {"update": done}
    history.append(last)
    if bar is not None:
        status = f"{extra['env_steps_per_s']:.3g} env-steps/s"
        if learner.return_metric in last:
            status += f"  {learner.return_metric} {last[learner.return_metric]:.3f}"
        bar.update(0, completed=done, status=status)
    if on_chunk is not None:
        on_chunk(done, last)


def _open_store(config: TrainConfig, run_metadata: dict | None) -> tuple[CheckpointStore, int]:
    """The run dir's checkpoint store and the update to start from; writes ``run.json``."""
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--run-dir {run_dir} cannot be created: {error.strerror}") from None
    store = CheckpointStore(run_dir, config.keep_checkpoints)
    latest = store.latest_step()
    if config.resume and latest is None:
        raise ConfigError(f"--resume given but {store.directory} holds no checkpoint")
    if not config.resume and latest is not None:
        raise ConfigError(
            f"{run_dir} already holds checkpoints (latest update {latest}); "
            f"pass --resume to continue or choose another --run-dir"
        )
    if run_metadata is not None and _is_primary() and not config.resume:
        (run_dir / "run.json").write_text(json.dumps(run_metadata, indent=2, default=str))
    return store, latest if config.resume else 0


def train(
    learner: Learner,
    config: TrainConfig,
    num_tasks: int,
    run_metadata: dict | None = None,
    on_chunk: Callable[[int, dict], None] | None = None,
) -> tuple[State, list[dict]]:
    """Trains ``learner`` for ``config.num_updates`` updates; returns the state and the history.

    Args:
        num_tasks: the learner's global task batch, checked against the device count.
        run_metadata: written to ``run_dir/run.json`` (CLI arguments, learner config) so a
            run can be evaluated or resumed later.
        on_chunk: called after each chunk with (updates done, last metrics); for notebooks.

    Raises:
        ConfigError: bad sizes, an occupied run dir without ``resume``, a missing or corrupt
            checkpoint.
        TrainingDiverged: NaN in the metrics; the last good checkpoint stays on disk.
    """
    config.validate()
    mesh = distributed.make_task_mesh(config.num_devices)
    distributed.check_divisible(num_tasks, mesh)
    store, start = _open_store(config, run_metadata)
    base_key = jax.random.key(config.seed)
    host_state = to_host(jax.jit(learner.init)(jax.random.fold_in(base_key, INIT_STREAM)))
    if start:
        host_state = to_host(store.restore(start, host_state))
    specs = None
    if learner.state_partition is not None and mesh.devices.size > 1:
        specs = learner.state_partition(host_state, distributed.TASK_AXIS)
    state = place(host_state, mesh, specs)

    log = MetricsLog(Path(config.run_dir), config.tensorboard)
    log.truncate_after(start)
    bar = _progress(config.progress, config.num_updates, min(start, config.num_updates))
    history: list[dict] = []
    try:
        state = run_chunks(
            partial(make_chunk, learner, mesh),
            state,
            jax.random.fold_in(base_key, TRAIN_STREAM),
            start=start,
            num_updates=config.num_updates,
            updates_per_chunk=config.updates_per_chunk,
            on_chunk=partial(
                _report, learner=learner, log=log, bar=bar, history=history, on_chunk=on_chunk
            ),
            save=store.save,
            checkpoint_every=config.checkpoint_every,
            where=str(store.directory),
        )
    finally:
        if bar is not None:
            bar.stop()
        log.close()
        store.close()
    return state, history


def throughput(history: list[dict]) -> float:
    """Median env-steps/s over the chunks after the first (which includes compilation)."""
    rates = [h["env_steps_per_s"] for h in history[1:]] or [h["env_steps_per_s"] for h in history]
    return float(np.median(rates)) if rates else math.nan
