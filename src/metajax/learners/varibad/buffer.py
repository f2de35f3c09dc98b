"""VariBAD's VAE buffer of recent trials: one slot per task of an update, a ring over updates.

Slot j holds the trials of the j-th task of each update (``[slots, depth, ...]``), so the slots
shard over devices with the tasks. A VAE batch position i of ``vae_batch_trials`` draws its slot
from the block ``[iS/N, (i+1)S/N)`` (as PEARL's task slots) and a filled depth at random, so
every shard samples only its own slots and one and eight devices draw the same trials.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metajax import distributed
from metajax.learners.pearl.collection import stratified_tasks
from metajax.learners.varibad.config import Setup, TrialBuffer
from metajax.learners.varibad.vae import TrialBatch
from metajax.types import Transition


def empty(setup: Setup) -> TrialBuffer:
    """A zeroed buffer of ``num_tasks`` slots x ``depth`` trials."""
    config, env = setup.config, setup.env
    lead = (config.num_tasks, setup.depth)
    steps = env.horizon
    obs_dim = env.observation_space().shape[0]
    return TrialBuffer(
        obs=jnp.zeros((*lead, steps + 1, obs_dim), jnp.float32),
        next_state=jnp.zeros((*lead, steps, setup.state_dim), jnp.float32),
        mask=jnp.zeros((*lead, steps), bool),
    )


def trial_batch(traj: Transition, mask: jax.Array) -> TrialBatch:
    """The VAE's view of collected trials [T, B]: observations 0..T, true s', mask."""
    obs = jnp.concatenate([traj.obs[:1], traj.next_obs], axis=0)  # [T + 1, B, D]
    return TrialBatch(obs, traj.info["episode_final_obs"], mask)


def add(buffer: TrialBuffer, trials: TrialBatch, count: jax.Array, depth: int) -> TrialBuffer:
    """Writes this shard's trials (time-major [T, B_local]) at depth ``count % depth``."""
    position = count % depth
    pairs = zip(buffer, trials, strict=True)
    return TrialBuffer(*(slots.at[:, position].set(jnp.swapaxes(x, 0, 1)) for slots, x in pairs))


def sample(
    setup: Setup, buffer: TrialBuffer, count: jax.Array, key: jax.Array, axis_name: str | None
) -> tuple[TrialBatch, jax.Array]:
    """This shard's share of ``vae_batch_trials`` stored trials, time-major, and one key per
    trial for its ELBO noise; ``count`` updates have been written."""
    config = setup.config
    total = config.vae_batch_trials
    key_slots, key_depth, key_loss = jax.random.split(key, 3)
    slots = stratified_tasks(jax.random.split(key_slots, total), config.num_tasks)
    slots, depth_keys, loss_keys = distributed.local_slice(
        (slots, jax.random.split(key_depth, total), jax.random.split(key_loss, total)), axis_name
    )
    if axis_name is not None:
        shard = jax.lax.axis_index(axis_name)
        slots = slots - shard * distributed.local_size(config.num_tasks, axis_name)
    filled = jnp.minimum(count, setup.depth)
    depths = jax.vmap(lambda k: jax.random.randint(k, (), 0, filled))(depth_keys)
    picked = jax.tree.map(lambda x: x[slots, depths], buffer)  # [b, T (+ 1), ...]
    return TrialBatch(*(jnp.swapaxes(x, 0, 1) for x in picked)), loss_keys
