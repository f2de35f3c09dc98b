"""VariBAD's configuration, its checks, the state pytrees and the static ``Setup``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import numpy as np
import optax
from gymnax.environments import spaces

from metajax.envs.core import MetaEnv, TaskDistribution, flat_action_dim, is_discrete, obs_size
from metajax.envs.wrappers import TrialWrapper, unit_box_actions
from metajax.errors import ConfigError
from metajax.learners import trial_ppo
from metajax.learners.varibad import nets

PREDICTIONS = ("deterministic", "gaussian")  # decoder outputs: MSE, or a Gaussian's NLL
_POSITIVE = (
    "num_tasks",
    "episodes_per_trial",
    "latent_size",
    "encoder_hidden_size",
    "state_embed_size",
    "action_embed_size",
    "reward_embed_size",
    "policy_state_embed",
    "policy_latent_embed",
    "vae_buffer_trials",
    "vae_batch_trials",
    "vae_updates",
    "update_epochs",
    "num_minibatches",
)


@dataclass(frozen=True)
class Config:
    """VariBAD hyperparameters. Defaults follow the reference's point-robot settings
    (lmzintgraf/varibad ``args_pointrobot_varibad.py``) where they fit a CPU.

    Differences from the reference: one trial per task per update (``num_tasks`` trials of
    K episodes, not 16 processes x 200 steps), PPO minibatches of whole trials (4, not 8 of
    steps), a squared clipped value loss (not Huber), no running normalization of states,
    beliefs or rewards (``reward_scale`` instead), no VAE precollection and a policy update from
    the first iteration, a VAE buffer of 1024 trials (10000) and batches of 16 (15), and a
    policy that acts in [-1, 1] scaled to a Box action space (``unit_actions``).
    """

    num_tasks: int = 16  # trials per update, one task each (sharded over devices)
    episodes_per_trial: int = 3  # K: episodes of one task in a trial (the BAMDP horizon)
    # ENCODER q(m | tau:t): embeddings of (s', a, r), a GRU, a Gaussian head
    latent_size: int = 5
    encoder_hidden_size: int = 128
    state_embed_size: int = 32
    action_embed_size: int = 16
    reward_embed_size: int = 16
    tbptt_steps: int | None = None  # cut the encoder's gradient every this many steps
    # DECODERS p(r | s, a, s', m) and (option) p(s' | s, a, m)
    reward_decoder_sizes: tuple[int, ...] = (64, 32)  # layers of the reward decoder
    decoder_input_state: bool = False  # the reward decoder also sees s (reference: point robot)
    decoder_input_action: bool = False  # ... and a
    decode_transitions: bool = False  # add the transition decoder's term to the ELBO
    transition_decoder_sizes: tuple[int, ...] = (64, 32)  # layers of the transition decoder
    prediction: str = "deterministic"  # decoders' output: deterministic (MSE) | gaussian (NLL)
    # ELBO: every posterior (prior included) decodes every step of the trial (the reference's
    # default, decode_only_past=False); terms summed; None = all terms, else a random subset
    vae_subsample_elbos: int | None = None
    vae_subsample_decodes: int | None = None
    kl_weight: float = 1.0
    reward_loss_coef: float = 1.0
    transition_loss_coef: float = 1.0
    vae_lr: float = 1e-3
    vae_max_grad_norm: float | None = None
    vae_buffer_trials: int = 1024  # ring buffer of recent trials (a multiple of num_tasks)
    vae_batch_trials: int = 16  # trials per VAE step
    vae_updates: int = 3  # VAE steps per train step
    # POLICY pi(a | s, mean, logvar) and value, PPO over whole trials
    policy_state_embed: int = 64
    policy_latent_embed: int = 64
    hidden_sizes: tuple[int, ...] = (128, 128, 128)
    activation: str = "tanh"
    learning_rate: float = 7e-4
    gamma: float = 0.99
    gae_lambda: float = 0.9
    clip_eps: float = 0.1
    clip_value: bool = True  # clip the value loss too (by clip_eps, in reward units)
    update_epochs: int = 2  # PPO epochs over each update's trials
    num_minibatches: int = 4  # PPO minibatches of whole trials per epoch
    ent_coef: float = 0.001  # PPO entropy bonus coefficient
    vf_coef: float = 0.5  # PPO value loss coefficient
    max_grad_norm: float = 0.5  # clip of the policy and value nets' global gradient norm
    reward_scale: float = 1.0  # rewards are multiplied by this for the PPO losses
    rl_loss_through_encoder: bool = False  # let the PPO loss train the encoder too
    unit_actions: bool = True  # Box actions: the policy acts in [-1, 1], scaled to the env's box

    def validate(self, env: MetaEnv) -> None:
        """Raises a one-line ConfigError for impossible sizes or an unknown decoder option."""
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.prediction not in PREDICTIONS:
            raise ConfigError(
                f"unknown decoder prediction {self.prediction!r}; allowed: {', '.join(PREDICTIONS)}"
            )
        if self.vae_buffer_trials < self.num_tasks or self.vae_buffer_trials % self.num_tasks:
            raise ConfigError(
                f"vae_buffer_trials ({self.vae_buffer_trials}) must be a multiple of one "
                f"update's trials (num_tasks = {self.num_tasks})"
            )
        if self.num_tasks % self.num_minibatches:
            raise ConfigError(
                f"num_tasks ({self.num_tasks}) must be divisible by num_minibatches "
                f"({self.num_minibatches})"
            )
        for name in ("vae_subsample_elbos", "vae_subsample_decodes", "tbptt_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1 or None, got {getattr(self, name)}")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ConfigError("gamma and gae_lambda must lie in [0, 1]")
        if self.learning_rate <= 0 or self.vae_lr <= 0:
            raise ConfigError("learning_rate and vae_lr must be positive")
        if self.kl_weight < 0:
            raise ConfigError(f"kl_weight must be non-negative, got {self.kl_weight}")
        if self.decode_transitions and not isinstance(env.observation_space(), spaces.Box):
            raise ConfigError("decode_transitions needs a Box observation space")


class TrialBuffer(NamedTuple):
    """Recent trials for the VAE: ``[slots = num_tasks, depth, ...]`` (slot j holds the trials
    of task j of each update, so the slots shard over devices like the tasks)."""

    obs: jax.Array  # [S, depth, T + 1, D] trial observations; step t + 1 carries (a_t, r_t)
    next_state: jax.Array  # [S, depth, T, state] s' before an episode reset
    mask: jax.Array  # [S, depth, T] the step belongs to the trial


class Params(NamedTuple):
    """The policy's and the VAE's parameters (the VAE: encoder and decoders)."""

    policy: dict
    vae: dict


class State(NamedTuple):
    """VariBAD training state; everything resume needs, the VAE buffer included."""

    params: Params
    policy_opt: optax.OptState
    vae_opt: optax.OptState
    buffer: TrialBuffer
    count: jax.Array  # updates written to the buffer


@dataclass(frozen=True)
class Setup:
    """What VariBAD builds once (static): trial env, tasks, networks, optimizers, sizes."""

    env: TrialWrapper
    tasks: TaskDistribution
    encoder: nets.BeliefEncoder
    reward_decoder: nets.Decoder
    transition_decoder: nets.Decoder | None
    policy: nets.BeliefActorCritic
    policy_optimizer: optax.GradientTransformation
    vae_optimizer: optax.GradientTransformation
    config: Config
    state_dim: int
    action_dim: int  # width of the encoded action
    discrete: bool
    action_low: np.ndarray | None  # Box bounds (the encoder sees actions scaled to [-1, 1])
    action_high: np.ndarray | None

    @property
    def depth(self) -> int:
        """Trials per buffer slot."""
        return self.config.vae_buffer_trials // self.config.num_tasks


def make_networks(config: Config, state_dim: int, action_space) -> dict:
    """The encoder, decoders and policy modules of ``config``."""
    outputs = 2 if config.prediction == "gaussian" else 1
    transition = None
    if config.decode_transitions:
        transition = nets.Decoder(
            config.transition_decoder_sizes, state_dim * outputs, config.state_embed_size,
            config.action_embed_size, use_next_state=False, use_state=True, use_action=True,
        )  # fmt: skip
    return dict(
        encoder=nets.BeliefEncoder(
            config.encoder_hidden_size,
            config.latent_size,
            config.state_embed_size,
            config.action_embed_size,
            config.reward_embed_size,
        ),  # fmt: skip
        reward_decoder=nets.Decoder(
            config.reward_decoder_sizes,
            outputs,
            config.state_embed_size,
            config.action_embed_size,
            use_next_state=True,
            use_state=config.decoder_input_state,
            use_action=config.decoder_input_action,
        ),  # fmt: skip
        transition_decoder=transition,
        policy=nets.BeliefActorCritic(
            flat_action_dim(action_space),
            is_discrete(action_space),
            config.policy_state_embed,
            config.policy_latent_embed,
            config.hidden_sizes,
            config.activation,
        ),  # fmt: skip
    )


def make_setup(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Setup:
    """The ``Setup`` of VariBAD on ``env`` (wrapped in a K-episode ``TrialWrapper``; with
    ``unit_actions`` a finite Box action space is presented as [-1, 1] first)."""
    env = unit_box_actions(env) if config.unit_actions else env
    trial_env = TrialWrapper(env, config.episodes_per_trial)
    space = env.action_space()
    low = high = None
    if not is_discrete(space):
        shape = (flat_action_dim(space),)
        low = np.broadcast_to(np.asarray(space.low, np.float32), shape).copy()
        high = np.broadcast_to(np.asarray(space.high, np.float32), shape).copy()
    return Setup(
        env=trial_env,
        tasks=tasks,
        **make_networks(config, obs_size(env), space),
        policy_optimizer=trial_ppo.clipped_adam(config.learning_rate, config.max_grad_norm),
        vae_optimizer=trial_ppo.clipped_adam(config.vae_lr, config.vae_max_grad_norm),
        config=config,
        state_dim=obs_size(env),
        action_dim=flat_action_dim(space),
        discrete=is_discrete(space),
        action_low=low,
        action_high=high,
    )
