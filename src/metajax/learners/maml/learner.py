"""The MAML-family learner: Config, State, Setup, init, the meta-iteration, evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from gymnax.environments import spaces

from metajax import distributed
from metajax.envs.core import (
    EnvParams,
    MetaEnv,
    TaskDistribution,
    flat_action_dim,
    is_discrete,
    num_tasks,
    obs_size,
)
from metajax.errors import ConfigError
from metajax.learners import trpo
from metajax.learners.base import Learner
from metajax.learners.maml.core import (
    Batch,
    MetaGradientCore,
    flatten_steps,
    make_trpo_linearization,
    task_objective,
)
from metajax.learners.maml.represent import represent
from metajax.learners.maml.sampling import PolicyNetwork, collect, evaluate_task
from metajax.networks import activation

OUTER_OPTIMIZERS = ("trpo", "ppo")
INNER_ESTIMATORS = ("vpg", "lvc")


@dataclass(frozen=True)
class Config:
    """MAML-RL with the paper's 2D-navigation settings (Finn et al. 2017) as defaults."""

    num_tasks: int = 20  # global meta-batch of tasks per meta-iteration (sharded over devices)
    num_trajectories: int = 20  # trajectories per task per inner step (and for the outer step)
    horizon: int = 0  # steps per trajectory; 0 = the env's horizon
    gamma: float = 0.99  # discount factor
    baseline_reg: float = 1e-5  # ridge coefficient of the linear feature baseline
    normalize_advantages: bool = True  # per batch, over its valid steps
    # inner loop
    num_inner_steps: int = 1  # inner-loop policy-gradient steps per task
    inner_lr: float = 0.1  # step size of the inner steps
    inner_lrs: tuple[float, ...] = ()  # per-step inner learning rates (overrides inner_lr)
    learn_inner_lr: bool = False  # Meta-SGD: learned per-parameter, per-step learning rates
    first_order: bool = False  # drop the second-order terms of the meta-gradient
    inner_estimator: str = "vpg"  # "vpg" (MAML) or "lvc" (ProMP's low-variance curvature)
    # outer loop
    outer: str = "trpo"  # "trpo" or "ppo"
    max_kl: float = 0.01  # TRPO trust region
    cg_iters: int = 10  # conjugate-gradient iterations of the TRPO step
    cg_damping: float = 1e-5  # damping of the Fisher-vector products
    # fraction of each shard's tasks whose trajectories the Fisher-vector products use (rllab's
    # ConjugateGradientOptimizer subsample_factor, by task); 1.0 = the exact Fisher (default)
    cg_subsample: float = 1.0
    line_search_steps: int = 15  # TRPO backtracking line-search steps
    backtrack_ratio: float = 0.8  # TRPO line search: step shrink per try
    outer_lr: float = 1e-3  # PPO (Adam) meta learning rate
    outer_epochs: int = 5  # PPO gradient steps per meta-iteration
    clip_eps: float = 0.2  # PPO clipping of the outer likelihood ratio
    inner_kl_coeff: float = 0.0  # ProMP: KL penalty on the pre-update policies
    exploration_weight: float = 0.0  # E-MAML: weight of the sampling-distribution term
    # policy: Gaussian (Box actions) or categorical (Discrete) MLP
    hidden_sizes: tuple[int, ...] = (100, 100)  # policy MLP layers
    activation: str = "relu"  # policy MLP activation
    init_log_std: float = 0.0  # initial log std of Gaussian policies
    # evaluation on held-out tasks (the paper's test protocol)
    eval_inner_steps: int = 3  # adaptation steps measured on held-out tasks
    eval_inner_lrs: tuple[float, ...] = (0.1, 0.05)  # per step; the last one repeats
    eval_trajectories: int = 40  # trajectories per held-out task and step
    eval_task_chunk: int = 20  # tasks evaluated at once (bounds memory)

    def validate(self, env: MetaEnv) -> None:
        """Raises a one-line ``ConfigError`` for the first invalid option."""
        space = env.action_space()
        checks = [
            (self.num_tasks >= 1, f"num_tasks must be at least 1, got {self.num_tasks}"),
            (
                self.num_trajectories >= 2,
                f"num_trajectories must be at least 2, got {self.num_trajectories}",
            ),
            (self.horizon >= 0, f"horizon must be >= 0 (0 = env horizon), got {self.horizon}"),
            (
                self.num_inner_steps >= 1,
                f"num_inner_steps must be at least 1, got {self.num_inner_steps}",
            ),
            (
                self.eval_inner_steps >= 0,
                f"eval_inner_steps must be >= 0, got {self.eval_inner_steps}",
            ),
            (
                self.outer in OUTER_OPTIMIZERS,
                f"unknown outer optimizer '{self.outer}'; allowed: {', '.join(OUTER_OPTIMIZERS)}",
            ),
            (
                self.inner_estimator in INNER_ESTIMATORS,
                f"unknown inner_estimator '{self.inner_estimator}'; "
                f"allowed: {', '.join(INNER_ESTIMATORS)}",
            ),
            (self.max_kl > 0, f"max_kl must be positive, got {self.max_kl}"),
            (self.cg_iters >= 1, f"cg_iters must be at least 1, got {self.cg_iters}"),
            (
                0 < self.cg_subsample <= 1,
                f"cg_subsample must be in (0, 1], got {self.cg_subsample}",
            ),
            (
                0 < self.backtrack_ratio < 1,
                f"backtrack_ratio must be in (0, 1), got {self.backtrack_ratio}",
            ),
            (self.outer_epochs >= 1, f"outer_epochs must be at least 1, got {self.outer_epochs}"),
            (self.outer_lr > 0, f"outer_lr must be positive, got {self.outer_lr}"),
            (0 < self.gamma <= 1, f"gamma must be in (0, 1], got {self.gamma}"),
            (
                self.learn_inner_lr
                or min((self.inner_lr, *self.inner_lrs, *self.eval_inner_lrs)) > 0,
                "inner learning rates must be positive unless learn_inner_lr, got "
                f"inner_lr={self.inner_lr}, inner_lrs={self.inner_lrs}, "
                f"eval_inner_lrs={self.eval_inner_lrs}",
            ),
            (self.eval_trajectories >= 2, "eval_trajectories must be at least 2"),
            (self.eval_task_chunk >= 1, "eval_task_chunk must be at least 1"),
            (bool(self.hidden_sizes), "hidden_sizes must name at least one layer"),
            (
                isinstance(space, (spaces.Box, spaces.Discrete)),
                f"the MAML family needs a Box or Discrete action space, got {space}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        activation(self.activation)  # raises a ConfigError for an unknown name


class MAMLState(NamedTuple):
    """Meta-parameters ``{"policy": ..., ["inner_lr": ...]}``, outer optimizer state, step."""

    params: dict
    opt_state: Any
    step: jax.Array


State = MAMLState


@dataclass(frozen=True)
class Setup:
    """What the learner's functions share, built once by ``make_setup``."""

    env: MetaEnv
    tasks: TaskDistribution
    network: PolicyNetwork
    core: MetaGradientCore  # the network's apply, discrete, inner estimator, first order
    optimizer: optax.GradientTransformation  # outer: Adam (PPO) or identity (TRPO)
    config: Config
    horizon: int  # steps per trajectory
    obs_dim: int  # flattened observation size
    train_lrs: tuple[float, ...]  # inner learning rate of each training inner step
    eval_lrs: tuple[float, ...]  # inner learning rate of each evaluation inner step


def step_lrs(lrs: tuple[float, ...], default: float, steps: int) -> tuple[float, ...]:
    """Per-step learning rates: ``lrs`` (its last one repeated) or ``default`` everywhere."""
    lrs = tuple(lrs) or (default,)
    return tuple(float(lrs[min(k, len(lrs) - 1)]) for k in range(steps))


def make_setup(config: Config, env: MetaEnv, tasks: TaskDistribution) -> Setup:
    """The policy network, meta-gradient core and outer optimizer of ``config`` on ``env``."""
    space = env.action_space()
    discrete = is_discrete(space)
    network = PolicyNetwork(
        flat_action_dim(space),
        discrete,
        tuple(config.hidden_sizes),
        config.activation,
        config.init_log_std,
    )
    core = MetaGradientCore(network.apply, discrete, config.inner_estimator, config.first_order)
    optimizer = optax.adam(config.outer_lr) if config.outer == "ppo" else optax.identity()
    return Setup(
        env=env,
        tasks=tasks,
        network=network,
        core=core,
        optimizer=optimizer,
        config=config,
        horizon=config.horizon or env.horizon,
        obs_dim=obs_size(env),
        train_lrs=step_lrs(config.inner_lrs, config.inner_lr, config.num_inner_steps),
        eval_lrs=step_lrs(config.eval_inner_lrs, config.inner_lr, config.eval_inner_steps),
    )


def init(setup: Setup, key: jax.Array) -> MAMLState:
    """Fresh policy parameters (plus Meta-SGD learning rates) and outer optimizer state."""
    policy_params = setup.network.init(key, jnp.zeros((1, setup.obs_dim), jnp.float32))
    params = {"policy": policy_params}
    if setup.config.learn_inner_lr:
        params["inner_lr"] = jax.tree.map(
            lambda p: jnp.stack([jnp.full_like(p, lr) for lr in setup.train_lrs]), policy_params
        )
    return MAMLState(params, setup.optimizer.init(params), jnp.zeros((), jnp.int32))


def batch_terms(setup: Setup, meta_params: dict, data: Batch, explore_adv: jax.Array) -> dict:
    """``task_objective``'s terms averaged over this shard's tasks (``data``: [tasks, ...])."""
    terms = jax.vmap(task_objective, in_axes=(None, None, None, 0, 0, None))(
        setup.core, setup.config, meta_params, data, explore_adv, setup.train_lrs
    )
    return jax.tree.map(jnp.mean, terms)


def trpo_update(
    setup: Setup, state: MAMLState, data: Batch, explore_adv: jax.Array, axis_name: str | None
) -> tuple[MAMLState, dict]:
    """One TRPO meta-step through the adaptation; its metrics are global."""
    config = setup.config

    def loss_and_kl(params):
        terms = batch_terms(setup, params, data, explore_adv)
        return terms["loss"], terms["kl"]

    local_tasks = jax.tree.leaves(data)[0].shape[0]
    fisher_tasks = max(1, round(config.cg_subsample * local_tasks))
    params, info = trpo.trpo_step(
        loss_and_kl,
        lambda params: loss_and_kl(params)[1],
        state.params,
        max_kl=config.max_kl,
        cg_iters=config.cg_iters,
        cg_damping=config.cg_damping,
        line_search_steps=config.line_search_steps,
        backtrack_ratio=config.backtrack_ratio,
        axis_name=axis_name,
        linearize=lambda p: make_trpo_linearization(
            setup.core, config, p, data, explore_adv, setup.train_lrs, fisher_tasks
        ),
    )
    metrics = {
        "loss": info.loss_before,
        "loss_after": info.loss_after,
        "kl": info.kl,
        "step_fraction": info.step_fraction,
        "grad_norm": info.grad_norm,
    }
    return state._replace(params=params), metrics


def ppo_update(
    setup: Setup, state: MAMLState, data: Batch, explore_adv: jax.Array, axis_name: str | None
) -> tuple[MAMLState, dict]:
    """``outer_epochs`` clipped-surrogate Adam steps on the same data; global metrics."""

    def loss_with_terms(params):
        terms = batch_terms(setup, params, data, explore_adv)
        return terms["loss"], terms

    def epoch(carry, _):
        params, opt_state = carry
        (loss, terms), grad = jax.value_and_grad(loss_with_terms, has_aux=True)(params)
        grad, loss, kl = distributed.pmean((grad, loss, terms["kl"]), axis_name)
        updates, opt_state = setup.optimizer.update(grad, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, kl)

    (params, opt_state), (losses, kls) = jax.lax.scan(
        epoch, (state.params, state.opt_state), None, setup.config.outer_epochs
    )
    metrics = {"loss": losses[0], "loss_after": losses[-1], "kl": kls[-1]}
    return state._replace(params=params, opt_state=opt_state), metrics


def train_step(
    setup: Setup, state: MAMLState, key: jax.Array, *, axis_name: str | None = None
) -> tuple[MAMLState, dict]:
    """One meta-iteration on this shard's slice of the task axis named ``axis_name``."""
    config, num_inner = setup.config, setup.config.num_inner_steps
    # GLOBAL TASK BATCH, THIS SHARD'S SLICE
    key_tasks, key_sample = jax.random.split(key)
    task_batch, task_keys = distributed.local_task_draw(
        setup.tasks, key_tasks, key_sample, config.num_tasks, axis_name
    )

    # COLLECT PRE- AND POST-UPDATE TRAJECTORIES
    data = jax.vmap(partial(collect, setup), in_axes=(None, 0, 0))(
        state.params, task_batch, task_keys
    )
    data = flatten_steps(data)  # [tasks, K + 1, T * N, ...]
    returns = jnp.mean(data.episode_return, axis=-1)  # [tasks, K + 1]
    post = returns[:, num_inner]
    post_mean = distributed.pmean(jnp.mean(post), axis_name)  # two-pass variance
    post_std = jnp.sqrt(distributed.pmean(jnp.mean((post - post_mean) ** 2), axis_name))
    explore_adv = (post - post_mean) / (post_std + 1e-8)  # [tasks]

    # OUTER STEP (its metrics are already global: averaged inside)
    update = trpo_update if config.outer == "trpo" else ppo_update
    state, outer_metrics = update(setup, state, data, explore_adv, axis_name)

    return_metrics = {
        "pre_update_return": jnp.mean(returns[:, 0]),
        "post_update_return": jnp.mean(post),
    }
    metrics = distributed.pmean(return_metrics, axis_name) | outer_metrics
    return state._replace(step=state.step + 1), metrics


def evaluate(setup: Setup, state: MAMLState, key: jax.Array, eval_tasks: EnvParams) -> jax.Array:
    """Mean return on each task after 0..K inner steps: ``[num_tasks, K + 1]``."""
    keys = jax.random.split(key, num_tasks(eval_tasks))
    return jax.lax.map(
        lambda args: evaluate_task(setup, state.params, *args),
        (eval_tasks, keys),
        batch_size=setup.config.eval_task_chunk,
    )


def make_train_step(setup: Setup, axis_name: str | None):
    """The meta-iteration for one shard of the task axis named ``axis_name``."""
    return partial(train_step, setup, axis_name=axis_name)


def make_learner(
    config: Config, env: MetaEnv, tasks: TaskDistribution, name: str = "maml"
) -> Learner:
    """The MAML-family learner ``name`` ("maml", "promp", "emaml") configured by ``config``."""
    config.validate(env)
    setup = make_setup(config, env, tasks)
    steps = config.num_tasks * config.num_trajectories * setup.horizon
    return Learner(
        name=name,
        init=partial(init, setup),
        evaluate=partial(evaluate, setup),
        adaptation_unit="gradient step",
        env_steps_per_update=steps * (config.num_inner_steps + 1),
        make_train_step=partial(make_train_step, setup),
        return_metric="post_update_return",
        represent=partial(represent, setup),
    )
