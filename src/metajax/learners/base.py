"""The learner interface every metajax learner implements (RL², MAML family, PEARL, SAC).

A learner is a module of pure functions over a named state pytree, optax style, bound to a
frozen ``Setup`` by its ``make_learner`` into a ``Learner`` (see ``learners/README.md``). The
trainer (``metajax.train``) takes ``make_train_step(axis_name)``, jits and scans the step,
shards it over devices, checkpoints the state and calls ``evaluate`` at the end; notebooks call
the same functions directly (``learner.train_step`` is ``make_train_step(None)``).

Data parallelism: a train step is written for one shard of the task axis. When the trainer
runs it under ``jax.shard_map`` it passes ``axis_name``; the learner then
- draws the *global* batch of tasks and keys from the (replicated) key and keeps its own slice
  (``metajax.distributed.local_task_draw``), so 1 and 8 devices see the same data, and
- averages gradients and metrics with ``metajax.distributed.pmean`` (identity when
  ``axis_name`` is None).
State leaves are replicated unless ``state_partition`` says otherwise (PEARL's per-task replay
buffers are sharded over the task axis).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax

State = Any  # a NamedTuple / flax.struct pytree owned by the learner
Metrics = dict[str, jax.Array]


class TrainStep(Protocol):
    def __call__(self, state: State, key: jax.Array) -> tuple[State, Metrics]: ...


class Learner(NamedTuple):
    """Pure functions of one configured learner, bound to its ``Setup`` by ``make_learner``.

    Attributes:
        name: the learner's registry name ("rl2", "maml", "promp", "emaml", "pearl", "sac").
        init: ``init(key) -> State``.
        make_train_step: ``make_train_step(axis_name) -> TrainStep``: one update
            ``(state, key) -> (state, metrics)`` written for one shard of the task axis named
            ``axis_name`` (None: one device, no ``shard_map``); metrics are scalars.
        evaluate: ``evaluate(state, key, tasks) -> returns [num_tasks, K + 1 or K]``: the
            return on each given task after each adaptation unit (see ``adaptation_unit``).
        adaptation_unit: "episode" (RL², PEARL: return of episode k) or "gradient step" (MAML:
            return after k inner steps, k = 0 first).
        env_steps_per_update: global env steps one train step consumes (for throughput).
        return_metric: the name of the training metric that is the learner's headline return
            (shown by the progress bar, summarized by sweeps); every learner emits one.
        state_partition: ``state_partition(state, axis_name) -> pytree of jax.P`` for sharding,
            or None when every leaf is replicated.
        act: optional ``act(state, carry, obs [B, ...], first [B], keys [B]) -> (carry,
            action, extras)``, the trained policy as a ``rollout`` policy for notebooks; a
            carry of None starts from fresh memory.
        represent: optional ``represent(state, key, tasks) -> Representation``
            (``learners/representation.py``): the learner's task representation at every row
            of held-out trials (RL²'s memory, PEARL's q(z | c), MAML's adapted parameters),
            what ``metajax probe`` decodes; None when the learner has none.
    """

    name: str
    init: Callable[[jax.Array], State]
    make_train_step: Callable[[str | None], TrainStep]
    evaluate: Callable[[State, jax.Array, Any], jax.Array]
    adaptation_unit: str
    env_steps_per_update: int
    return_metric: str
    state_partition: Callable[[State, str], Any] | None = None
    act: Callable[..., tuple[Any, jax.Array, dict]] | None = None
    represent: Callable[[State, jax.Array, Any], Any] | None = None

    @property
    def train_step(self) -> TrainStep:
        """The one-device train step, ``make_train_step(None)``."""
        return self.make_train_step(None)
