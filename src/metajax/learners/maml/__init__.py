"""MAML-RL, ProMP and E-MAML: one meta-gradient core, TRPO or PPO-clip outer steps.

One meta-iteration, for a batch of tasks (vmapped over tasks; each task has its own adapted
parameters, so the rollout engine is vmapped over tasks):

1. COLLECT (no gradient, ``sampling.collect``): ``theta_0 = theta``; for k < K sample
   trajectories ``D_k`` with ``theta_k`` and take a policy-gradient step
   ``theta_{k+1} = adapt(theta_k, D_k, alpha_k)``; then sample ``D_K`` with the adapted
   ``theta_K``. Advantages are reward-to-go minus the linear feature baseline refit on each batch.
2. META-OBJECTIVE (differentiable in ``theta``, data fixed; ``core.task_objective``): recompute
   ``theta_K(theta)`` by the same inner steps and evaluate the outer surrogate on ``D_K``.
   ``jax.grad`` through ``adapt``'s own ``jax.grad`` gives the exact second-order meta-gradient;
   ``first_order`` stops the gradient through the inner gradient (FO-MAML).
3. OUTER STEP (``learner.trpo_update`` / ``ppo_update``): TRPO (natural gradient through the
   adaptation, KL on the adapted policy) or PPO-clip epochs with Adam. TRPO linearizes the
   adaptation once per step (``core.linearize_adaptation``): the meta-gradient and every
   Fisher-vector product of CG reuse it.

ProMP (Rothfuss et al. 2019) = LVC inner estimator (``inner_estimator="lvc"``: the inner
objective ``pi_theta / pi_old * A``, ``pi_old`` the sampling policy's stored probability, whose
Hessian credits the sampling distribution), clipped outer objective, and a KL penalty between
each pre-update policy before and after the meta-update (``inner_kl_coeff``). E-MAML (Stadie et
al. 2018) adds the exploration term
``exploration_weight * E[R(post-update)] * grad log pi(pre-update trajectories)``.

Data layout: a task's batch for one inner or outer step has leaves ``[T, N, ...]`` (time
first, as the rollout engine returns them); a train step stacks ``[tasks, K + 1, T, N, ...]``
and then merges the step and trajectory axes (``flatten_steps``: ``[tasks, K + 1, T * N, ...]``;
every loss is a masked mean over samples, so both layouts give the same values).
"""

from metajax.learners.maml.core import (
    Batch,
    MetaGradientCore,
    adapted_distribution,
    flatten_steps,
    index,
    linearize_adaptation,
    make_fisher_vector_product,
    make_trpo_linearization,
    policy_gradient_loss,
    step_alphas,
    surrogate_loss,
    task_objective,
)
from metajax.learners.maml.learner import (
    INNER_ESTIMATORS,
    OUTER_OPTIMIZERS,
    Config,
    MAMLState,
    Setup,
    State,
    evaluate,
    init,
    make_learner,
    make_setup,
    train_step,
)
from metajax.learners.maml.sampling import PolicyNetwork, collect, sample

__all__ = [
    "INNER_ESTIMATORS",
    "OUTER_OPTIMIZERS",
    "Batch",
    "Config",
    "MAMLState",
    "MetaGradientCore",
    "PolicyNetwork",
    "Setup",
    "State",
    "adapted_distribution",
    "collect",
    "evaluate",
    "flatten_steps",
    "index",
    "init",
    "linearize_adaptation",
    "make_fisher_vector_product",
    "make_learner",
    "make_setup",
    "make_trpo_linearization",
    "policy_gradient_loss",
    "sample",
    "step_alphas",
    "surrogate_loss",
    "task_objective",
    "train_step",
]
