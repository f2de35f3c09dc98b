"""VariBAD's VAE: the belief over a trial, the sequential KL and the ELBO.

Inputs come from the ``TrialWrapper``'s observations: the observation at step t + 1 holds the
state s_{t+1}, the previous action a_t and reward r_t, so the encoder reads (s', a, r) from
the observation the agent sees. Acting and the VAE therefore encode the same sequence. One
difference from the reference: at an episode boundary inside a trial the encoder sees the next
episode's first state with the last reward (the reference feeds the terminal state); the
decoders use the true s' (``info["episode_final_obs"]``).

The ELBO follows the reference's default: each of the T + 1 posteriors of a trial (the prior,
q(m | tau:0), included) decodes the rewards (and optionally the transitions) of *every* step
of the trial, past and future (``decode_only_past = False``); the reconstruction terms and the
KL of each posterior to the previous one (N(0, I) for the first) are summed over the trial and
averaged over trials.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax import rollout
from metajax.learners.varibad.config import Setup


class TrialBatch(NamedTuple):
    """Trials for the ELBO, time-major."""

    obs: jax.Array  # [T + 1, B, D] trial observations (step t + 1 carries a_t, r_t)
    next_state: jax.Array  # [T, B, S] the true s' of step t
    mask: jax.Array  # [T, B] the step belongs to the trial


def split_obs(setup: Setup, obs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A trial observation [..., D] -> (state, previous action scaled to [-1, 1], reward)."""
    s, a = setup.state_dim, setup.action_dim
    state, action, reward = obs[..., :s], obs[..., s : s + a], obs[..., s + a]
    if setup.action_low is not None:  # the executed (clipped) action, scaled to [-1, 1]
        low, high = jnp.asarray(setup.action_low), jnp.asarray(setup.action_high)
        half = jnp.where(high > low, (high - low) / 2.0, 1.0)
        action = (jnp.clip(action, low, high) - (high + low) / 2.0) / half
    return state, action, reward


def zero_hidden(setup: Setup, batch: int) -> jax.Array:
    """The encoder's state at a trial start [B, H] (its belief is the prior)."""
    return jnp.zeros((batch, setup.config.encoder_hidden_size), jnp.float32)


def encoder_step(setup: Setup, params, hidden: jax.Array, obs: jax.Array, first: jax.Array):
    """The encoder state after reading ``obs`` [B, D]: zero where ``first`` (a new trial)."""
    state, action, reward = split_obs(setup, obs)
    advanced = setup.encoder.apply(params, hidden, state, action, reward)
    return jnp.where(first[:, None], zero_hidden(setup, obs.shape[0]), advanced)


def belief(setup: Setup, params, hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, log-variance) [..., L] held in the encoder state ``hidden``."""
    return setup.encoder.apply(params, hidden, method="belief")


def encode_trials(setup: Setup, params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Beliefs after 0..T transitions of whole trials, obs [T + 1, B, D]: ``[T + 1, B, L]``
    each (index 0 is the prior). ``tbptt_steps`` cuts the gradient through the GRU state."""
    tbptt = setup.config.tbptt_steps
    not_first = jnp.zeros((obs.shape[1],), bool)

    def step(hidden, inputs):
        t, obs_t = inputs
        if tbptt is not None:
            hidden = jnp.where(t % tbptt == 0, jax.lax.stop_gradient(hidden), hidden)
        hidden = encoder_step(setup, params, hidden, obs_t, not_first)
        return hidden, hidden

    start = zero_hidden(setup, obs.shape[1])
    _, hiddens = jax.lax.scan(step, start, (jnp.arange(obs.shape[0] - 1), obs[1:]))
    hiddens = jnp.concatenate([start[None], hiddens], axis=0)  # [T + 1, B, H]
    return belief(setup, params, hiddens)


def beliefs_along(setup: Setup, params, obs: jax.Array, first: jax.Array):
    """The beliefs the policy acts on along rollouts obs [T, B, D] (the encoder reset where
    ``first`` [T, B]): (mean, log-variance) ``[T, B, L]``."""

    def step(hidden, inputs):
        hidden = encoder_step(setup, params, hidden, *inputs)
        return hidden, hidden

    _, hiddens = jax.lax.scan(step, zero_hidden(setup, obs.shape[1]), (obs, first))
    return belief(setup, params, hiddens)


def gaussian_kl(mean_q, logvar_q, mean_p, logvar_p) -> jax.Array:
    """KL(N(mean_q, exp logvar_q) || N(mean_p, exp logvar_p)), summed over the last axis."""
    ratio = jnp.exp(logvar_q - logvar_p)
    gap = (mean_q - mean_p) ** 2 / jnp.exp(logvar_p)
    return 0.5 * jnp.sum(logvar_p - logvar_q - 1.0 + ratio + gap, axis=-1)


def sequential_kl(means: jax.Array, logvars: jax.Array) -> jax.Array:
    """KL of each posterior [T + 1, B, L] to the previous one (N(0, I) before the first):
    ``[T + 1, B]``."""
    prev_mean = jnp.concatenate([jnp.zeros_like(means[:1]), means[:-1]], axis=0)
    prev_logvar = jnp.concatenate([jnp.zeros_like(logvars[:1]), logvars[:-1]], axis=0)
    return gaussian_kl(means, logvars, prev_mean, prev_logvar)


def reconstruction_loss(prediction: jax.Array, target: jax.Array, kind: str) -> jax.Array:
    """Per-item loss, mean over the last axis: squared error, or a Gaussian's negative
    log-likelihood when ``prediction`` holds (mean, log-variance)."""
    if kind == "deterministic":
        return jnp.mean((prediction - target) ** 2, axis=-1)
    mean, logvar = jnp.split(prediction, 2, axis=-1)
    nll = 0.5 * (logvar + (target - mean) ** 2 / jnp.exp(logvar) + jnp.log(2 * jnp.pi))
    return jnp.mean(nll, axis=-1)


def term_indices(setup: Setup, keys: jax.Array, steps: int):
    """Which ELBO terms [E, B] (of T + 1) and which decoded steps [E, D, B] (of T) enter the
    loss: all of them, or random subsets (``vae_subsample_elbos`` / ``_decodes``) drawn with
    each trial's key (``keys`` [B]), so a shard's trials draw what they draw in the full batch."""
    config = setup.config
    batch = keys.shape[0]
    if config.vae_subsample_elbos is None:
        elbos = jnp.broadcast_to(jnp.arange(steps + 1)[:, None], (steps + 1, batch))
    else:
        draw = lambda k: jax.random.randint(k, (config.vae_subsample_elbos,), 0, steps + 1)
        elbos = jax.vmap(draw, out_axes=1)(rollout.fold_in_each(keys, 1))
    num_elbos = elbos.shape[0]
    if config.vae_subsample_decodes is None:
        decodes = jnp.broadcast_to(jnp.arange(steps)[None, :, None], (num_elbos, steps, batch))
    else:
        shape = (num_elbos, config.vae_subsample_decodes)
        draw = lambda k: jax.random.randint(k, shape, 0, steps)
        decodes = jax.vmap(draw, out_axes=2)(rollout.fold_in_each(keys, 2))
    return elbos, decodes


def _gather(x: jax.Array, index: jax.Array) -> jax.Array:
    """x [N, B, ...] at time indices ``index`` [..., B] -> [..., B, ...]."""
    columns = jnp.broadcast_to(jnp.arange(x.shape[1]), index.shape)
    return x[index, columns]


def decoder_terms(setup: Setup, params, batch: TrialBatch, z: jax.Array, keys: jax.Array):
    """Summed reconstruction losses of the chosen (posterior, step) pairs, and the chosen
    posteriors' validity [E, B] (reward, transition or 0, elbos, valid)."""
    steps, size = batch.mask.shape
    elbos, decodes = term_indices(setup, keys, steps)
    valid_elbo = jnp.concatenate([jnp.ones((1, size), bool), batch.mask], axis=0)
    state, _, _ = split_obs(setup, batch.obs[:-1])  # s_j
    _, action, reward = split_obs(setup, batch.obs[1:])  # a_j, r_j
    latent = _gather(z, elbos)[:, None]  # [E, 1, B, L]
    latent = jnp.broadcast_to(latent, (*decodes.shape, latent.shape[-1]))
    weight = (_gather(valid_elbo, elbos)[:, None] & _gather(batch.mask, decodes)).astype(
        jnp.float32
    )  # [E, D, B]
    inputs = (_gather(state, decodes), _gather(action, decodes), _gather(batch.next_state, decodes))
    kind = setup.config.prediction
    pred = setup.reward_decoder.apply(params["reward_decoder"], latent, *inputs)
    reward_loss = reconstruction_loss(pred, _gather(reward, decodes)[..., None], kind)
    reward_loss = jnp.sum(reward_loss * weight) / size
    transition_loss = jnp.float32(0.0)
    if setup.transition_decoder is not None:
        pred = setup.transition_decoder.apply(params["transition_decoder"], latent, *inputs)
        transition_loss = reconstruction_loss(pred, inputs[2], kind)
        transition_loss = jnp.sum(transition_loss * weight) / size
    return reward_loss, transition_loss, elbos, _gather(valid_elbo, elbos)


def elbo_loss(setup: Setup, params, batch: TrialBatch, keys: jax.Array):
    """The negative ELBO of trials ``batch`` (module docstring), one key per trial ``keys``
    [B]; returns ``(loss, info)``."""
    config = setup.config
    means, logvars = encode_trials(setup, params["encoder"], batch.obs)  # [T + 1, B, L]
    draw = lambda k: jax.random.normal(k, (means.shape[0], means.shape[2]))
    noise = jax.vmap(draw, out_axes=1)(rollout.fold_in_each(keys, 0))  # [T + 1, B, L]
    z = means + jnp.exp(0.5 * logvars) * noise
    reward_loss, transition_loss, elbos, valid = decoder_terms(setup, params, batch, z, keys)
    kl = _gather(sequential_kl(means, logvars), elbos)  # [E, B]
    kl = jnp.sum(kl * valid) / batch.mask.shape[1]
    loss = (
        config.reward_loss_coef * reward_loss
        + config.transition_loss_coef * transition_loss
        + config.kl_weight * kl
    )
    info = {"vae_loss": loss, "reward_loss": reward_loss, "kl": kl}
    if setup.transition_decoder is not None:
        info["transition_loss"] = transition_loss
    return loss, info
