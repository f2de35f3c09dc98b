"""VariBAD's networks: the recurrent belief encoder, the decoders, the belief-conditioned policy."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import networks


class BeliefEncoder(nn.Module):
    """q(m | tau:t): embedded (s', a, r) -> GRU -> Gaussian (mean, log-variance).

    ``__call__`` advances the GRU state by one transition; ``belief`` reads the Gaussian from a
    state (the zero state gives the prior, as in the reference).
    """

    hidden_size: int
    latent_size: int
    state_embed: int
    action_embed: int
    reward_embed: int

    def setup(self):
        self.state_fc = nn.Dense(self.state_embed)
        self.action_fc = nn.Dense(self.action_embed)
        self.reward_fc = nn.Dense(self.reward_embed)
        self.gru = nn.GRUCell(self.hidden_size)
        self.mean_head = nn.Dense(self.latent_size)
        self.logvar_head = nn.Dense(self.latent_size)

    def __call__(self, hidden, next_state, action, reward):
        """One step: hidden [B, H], s' [B, S], a [B, A], r [B] -> the new hidden [B, H]."""
        x = jnp.concatenate(
            [
                nn.relu(self.state_fc(next_state)),
                nn.relu(self.action_fc(action)),
                nn.relu(self.reward_fc(reward[..., None])),
            ],
            axis=-1,
        )
        hidden, _ = self.gru(hidden, x)
        return hidden

    def belief(self, hidden):
        """(mean, log-variance) [..., L] of the belief held in ``hidden``."""
        return self.mean_head(hidden), self.logvar_head(hidden)

    def initialize(self, hidden, next_state, action, reward):
        """Touches every layer (for ``init``)."""
        return self.belief(self(hidden, next_state, action, reward))


class Decoder(nn.Module):
    """An MLP on (m, embedded s', s, a): the reward decoder (s' in) or the transition one."""

    hidden_sizes: Sequence[int]
    output_size: int
    state_embed: int
    action_embed: int
    use_next_state: bool
    use_state: bool
    use_action: bool

    @nn.compact
    def __call__(self, latent, state, action, next_state):
        """Predictions [..., output_size] from inputs with the same leading shape."""
        state_fc = nn.Dense(self.state_embed, name="state_fc")  # shared by s and s'
        parts = [latent]
        if self.use_next_state:
            parts.append(nn.relu(state_fc(next_state)))
        if self.use_state:
            parts.append(nn.relu(state_fc(state)))
        if self.use_action:
            parts.append(nn.relu(nn.Dense(self.action_embed, name="action_fc")(action)))
        h = jnp.concatenate(parts, axis=-1)
        for size in self.hidden_sizes:
            h = nn.relu(nn.Dense(size)(h))
        return nn.Dense(self.output_size)(h)


class BeliefActorCritic(nn.Module):
    """pi(a | s, belief) and V(s, belief): embedded state and belief, separate actor and critic
    MLPs (the reference's policy with pass_latent_to_policy = (mean, logvar))."""

    action_dim: int
    discrete: bool
    state_embed: int = 64
    latent_embed: int = 64
    hidden_sizes: Sequence[int] = (128, 128, 128)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, state: jax.Array, belief: jax.Array):
        """state [..., S], belief [..., 2L] -> (distribution, value [...])."""
        act = networks.activation(self.activation)
        x = jnp.concatenate(
            [act(nn.Dense(self.state_embed)(state)), act(nn.Dense(self.latent_embed)(belief))],
            axis=-1,
        )
        actor = networks.MLP(self.hidden_sizes, activation=self.activation)(x)
        critic = networks.MLP(self.hidden_sizes, activation=self.activation)(x)
        dist = networks.PolicyHead(self.action_dim, self.discrete)(actor)
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(critic)[..., 0]
        return dist, value
