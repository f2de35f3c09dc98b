"""The meta-env interface: environments whose task lives in ``EnvParams``, task distributions.

An environment is a gymnax ``Environment`` (1.x API) whose ``EnvParams`` holds the *task* as
pytree leaves, so a batch of tasks is one ``EnvParams`` with a leading axis and ``vmap`` runs
thousands of them at once. ``reset`` never resamples the task: the task changes only when the
caller passes other params. ``step`` is gymnax's (same signature and returns) with the state
after a done step taken from ``MetaEnv.auto_reset``: a fresh ``reset_env`` unless the env
restarts from a start state cached at ``reset`` (the brax families, as brax's own training
wrapper does).

A ``TaskDistribution`` samples tasks for meta-training and holds a fixed, held-out test split
(and optionally an out-of-distribution split) for evaluation. The splits are disjoint by
construction: a content hash of each task (``task_hash``) puts it on the training or the
held-out side, training draws resample held-out tasks and the test split draws only held-out
ones; the OOD split comes from a range the training sampler never reaches.

Random roots: every stream starts from ``tagged_key(tag, seed)``, so equal seeds under
different tags (split pools, init, updates, evaluation, benchmark tuning) never give equal keys.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment as gymnax_env
from gymnax.environments import spaces

from metajax.envs.errors import check_seed

EnvParams = Any  # a flax.struct dataclass of task leaves; batched tasks carry a leading axis

TRAIN_SPLIT, TEST_SPLIT, OOD_SPLIT = "envs/split/train", "envs/split/test", "envs/split/ood"
MAX_TRAIN_TRIES = 32  # a training draw resamples up to this often (P(all held out) = 0.2^32)
MAX_TEST_TRIES = 256  # a test draw resamples up to this often (P(none held out) = 0.8^256)


def tag_id(tag: str) -> int:
    """The 32-bit number a tag folds into a key (crc32 of its UTF-8 bytes)."""
    return zlib.crc32(tag.encode())


def tagged_key(tag: str, seed: int) -> jax.Array:
    """The root key of the stream named ``tag``: ``fold_in(key(seed), tag_id(tag))``."""
    return jax.random.fold_in(jax.random.key(seed), tag_id(tag))


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: every input bit flips each output bit with p ~ 1/2."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _words(leaf: Any) -> jax.Array:
    """A leaf's exact bits as a flat uint32 vector (keys as their key data)."""
    leaf = jnp.asarray(leaf)
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    if leaf.dtype == jnp.bool_:
        return leaf.astype(jnp.uint32).ravel()
    size = leaf.dtype.itemsize
    if size < 4:  # 8- and 16-bit: bitcast to the unsigned type of that width, then widen
        unsigned = jnp.uint8 if size == 1 else jnp.uint16
        return jax.lax.bitcast_convert_type(leaf, unsigned).astype(jnp.uint32).ravel()
    return jax.lax.bitcast_convert_type(leaf, jnp.uint32).ravel()  # 64-bit: 2 words each


def task_hash(params: EnvParams, seed: int = 0) -> jax.Array:
    """A uint32 hash of one task's exact content (every leaf's bits and their positions).

    Pure jnp (vmap it over a batch of tasks); ``seed`` salts it, so another split seed holds
    out another set of tasks.
    """
    words = jnp.concatenate([_words(leaf) for leaf in jax.tree.leaves(params)])  # [W]
    salt = jnp.uint32(tag_id(f"envs/task_hash/{seed}"))
    position = _fmix32(jnp.arange(words.shape[0], dtype=jnp.uint32) ^ salt)
    mixed = _fmix32(words * jnp.uint32(0x9E3779B1) + position)
    return _fmix32(jnp.sum(mixed, dtype=jnp.uint32) ^ jnp.uint32(words.shape[0]))


@struct.dataclass
class EnvState:
    """Base env state: every env counts steps within its episode."""

    time: jax.Array


class MetaEnv(gymnax_env.Environment):
    """A gymnax environment with a fixed per-episode horizon and a task in ``EnvParams``.

    Subclasses implement ``reset_env``, ``step_env``, ``observation_space`` and
    ``action_space``; ``horizon`` is static (it fixes rollout shapes), so it lives on the env,
    not in the params.
    """

    horizon: int = 1
    # True when ``auto_reset`` restarts from a start state cached at ``reset`` rather than a
    # fresh ``reset_env``: every episode of an env slot then starts where its first one did.
    reuses_reset_state: bool = False

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: EnvState,
        action: int | float | jax.Array,
        params: EnvParams | None = None,
    ) -> tuple[Any, EnvState, jax.Array, jax.Array, jax.Array, dict[Any, Any]]:
        """gymnax 1.x ``step``: the same arguments, returns and info, with auto-reset.

        Returns ``(obs, state, reward, terminated, truncated, info)``; info adds
        ``terminated``, ``truncated`` and ``final_observation`` (the observation before the
        reset). Where the episode ended, obs and state are those of ``auto_reset``, which
        keeps ``params`` (the task); by default that is a fresh ``reset_env``, as in gymnax.
        """
        if params is None:
            params = self.default_params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = self.auto_reset(key_reset, state_st, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        obs = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), obs_re, obs_st)
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs_st,
        }
        return obs, state, reward, terminated, truncated, info

    def auto_reset(
        self, key: jax.Array, state: EnvState, params: EnvParams
    ) -> tuple[jax.Array, EnvState]:
        """The observation and state that follow the end of ``state``'s episode, same task.

        ``step`` computes it at every step and keeps it where the episode ended; the default
        is ``reset_env(key, params)``. Envs whose reset is expensive override it to restart
        from a start state cached in ``state`` (and set ``reuses_reset_state``).
        """
        del state
        return self.reset_env(key, params)

    def is_truncated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """An episode is truncated when it reaches the env's horizon."""
        del params
        return state.time >= self.horizon

    def observation_space(self, params: EnvParams | None = None) -> spaces.Space:
        raise NotImplementedError

    def action_space(self, params: EnvParams | None = None) -> spaces.Space:
        raise NotImplementedError

    def oracle_episode_return(self, params: EnvParams) -> jax.Array | None:
        """Expected return of one episode for a policy that knows the task, or None if unknown."""
        del params
        return None


@dataclass(frozen=True)
class TaskDistribution:
    """Samples tasks (``EnvParams``) for meta-training; holds fixed, disjoint held-out splits.

    A task is held out when ``task_hash(task_content(task), split_seed) % 1000`` is below
    ``held_out_permille``: training draws (fresh or the fixed pool) resample such tasks, the
    test split draws only them, so no test task is ever a training task. The OOD split is
    drawn by ``sample_ood_task`` from a range ``sample_task`` never reaches.

    Args:
        sample_task: draws one task from a key (the family's prior, both sides).
        num_train_tasks: size of a fixed training pool (PEARL-style splits); None draws
            fresh tasks at every call.
        num_test_tasks: size of the held-out test split.
        split_seed: seed of the fixed pools and salt of the hash (which tasks are held out).
        sample_ood_task: draws one task from a shifted, out-of-distribution range, if any.
        held_out_permille: share of the task space held out for testing, in 1/1000.
        task_content: the part of a task that identifies it (default: the whole params).
    """

    # False where a family declares no disjoint held-out split (it tests on its training tasks)
    disjoint_test_split: ClassVar[bool] = True

    sample_task: Callable[[jax.Array], EnvParams]
    num_train_tasks: int | None = None
    num_test_tasks: int = 1000
    split_seed: int = 0
    sample_ood_task: Callable[[jax.Array], EnvParams] | None = None
    held_out_permille: int = 200
    task_content: Callable[[EnvParams], Any] | None = None

    def __post_init__(self):
        check_seed(self.split_seed, "split_seed")
        if not 0 < self.held_out_permille < 1000:
            raise ValueError(f"held_out_permille must be in 1..999, got {self.held_out_permille}")

    def is_held_out(self, params: EnvParams) -> jax.Array:
        """True where one task belongs to the held-out side (a bool scalar; vmap for a batch)."""
        content = params if self.task_content is None else self.task_content(params)
        bucket = task_hash(content, self.split_seed) % jnp.uint32(1000)
        return bucket < jnp.uint32(self.held_out_permille)

    def _draw(self, key: jax.Array, held_out: bool, max_tries: int) -> EnvParams:
        """One task of the wanted side: tries ``sample_task(key)``, then ``fold_in(key, t)``."""

        def wanted(task: EnvParams) -> jax.Array:
            return self.is_held_out(task) == held_out

        def retry(carry):
            tries, _, _ = carry
            task = self.sample_task(jax.random.fold_in(key, tries))
            return tries + 1, task, wanted(task)

        first = self.sample_task(key)
        carry = (jnp.int32(1), first, wanted(first))
        carry = jax.lax.while_loop(lambda c: (c[0] < max_tries) & ~c[2], retry, carry)
        return carry[1]

    def sample_train_task(self, key: jax.Array) -> EnvParams:
        """One fresh training task (never a held-out one)."""
        return self._draw(key, False, MAX_TRAIN_TRIES)

    def sample(self, key: jax.Array, n: int) -> EnvParams:
        """Draws ``n`` training tasks: fresh ones, or uniformly from the fixed training pool."""
        if self.num_train_tasks is None:
            return jax.vmap(self.sample_train_task)(jax.random.split(key, n))
        index = jax.random.randint(key, (n,), 0, self.num_train_tasks)
        return jax.tree.map(lambda x: x[index], self.train_tasks())

    def train_tasks(self) -> EnvParams:
        """The fixed training pool (only for distributions with ``num_train_tasks``)."""
        if self.num_train_tasks is None:
            raise ValueError("this task distribution has no fixed training pool")
        keys = jax.random.split(tagged_key(TRAIN_SPLIT, self.split_seed), self.num_train_tasks)
        return jax.vmap(self.sample_train_task)(keys)

    def test_tasks(self, n: int | None = None) -> EnvParams:
        """The fixed held-out test split (its first ``n`` tasks), disjoint from training."""
        n = self.num_test_tasks if n is None else n
        keys = jax.random.split(tagged_key(TEST_SPLIT, self.split_seed), n)
        return jax.vmap(lambda key: self._draw(key, True, MAX_TEST_TRIES))(keys)

    def ood_test_tasks(self, n: int | None = None) -> EnvParams | None:
        """A fixed out-of-distribution test split, or None if the family declares none."""
        if self.sample_ood_task is None:
            return None
        n = self.num_test_tasks if n is None else n
        keys = jax.random.split(tagged_key(OOD_SPLIT, self.split_seed), n)
        return jax.vmap(self.sample_ood_task)(keys)

    def check_finite_split(self, all_tasks: EnvParams) -> None:
        """Raises ValueError unless an enumerated task space has tasks on both sides."""
        held_out = jax.vmap(self.is_held_out)(all_tasks)
        count, total = int(jnp.sum(held_out)), int(held_out.shape[0])
        if count in (0, total):
            side = "no held-out" if count == 0 else "no training"
            raise ValueError(
                f"split_seed={self.split_seed} leaves {side} task among the {total} tasks "
                f"(held_out_permille={self.held_out_permille}); use another split_seed"
            )


def check_splits(num_train_tasks: int | None, num_test_tasks: int) -> None:
    """Raises ValueError unless the splits can be drawn: a pool of >= 1 (or None), >= 1 test."""
    if num_train_tasks is not None and num_train_tasks < 1:
        raise ValueError(f"num_train_tasks must be at least 1 or None, got {num_train_tasks}")
    if num_test_tasks < 1:
        raise ValueError(f"num_test_tasks must be at least 1, got {num_test_tasks}")


def num_tasks(params: EnvParams) -> int:
    """The size of the leading (task) axis of a batch of tasks."""
    return jax.tree.leaves(params)[0].shape[0]


def obs_size(env: MetaEnv, params: EnvParams | None = None) -> int:
    """Number of entries of one flattened observation (static)."""
    return math.prod(env.observation_space(params).shape)


def is_discrete(space: spaces.Space) -> bool:
    """True for a Discrete space (categorical actions), False for Box."""
    return isinstance(space, spaces.Discrete)


def flat_action_dim(space: spaces.Space) -> int:
    """Width of an action once encoded for a network input (one-hot for Discrete)."""
    if isinstance(space, spaces.Discrete):
        return space.n
    return math.prod(space.shape)  # static: callers use it as a shape inside jit


def encode_action(space: spaces.Space, action: jax.Array) -> jax.Array:
    """An action as a float vector: one-hot for Discrete, flattened for Box."""
    if isinstance(space, spaces.Discrete):
        return jax.nn.one_hot(action, space.n, dtype=jnp.float32)
    return jnp.reshape(action, (-1,)).astype(jnp.float32)
