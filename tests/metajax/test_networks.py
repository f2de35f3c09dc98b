"""Networks: memory cores reset, distributions against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import networks
from metajax.cores import CoreConfig
from metajax.errors import ConfigError


@pytest.mark.parametrize("core", ["gru", "lstm"])
def test_recurrent_actor_critic_memory_and_reset(core):
    config = CoreConfig(name=core, size=8)
    net = networks.RecurrentActorCritic(action_dim=3, discrete=True, core=config)
    carry = networks.initial_carry(config, 2)
    no_reset = jnp.zeros(2, bool)
    params = net.init(jax.random.key(0), carry, jnp.zeros((2, 4)), no_reset)
    carry, (logits, value) = net.apply(params, carry, jnp.ones((2, 4)), no_reset)
    assert logits.shape == (2, 3) and value.shape == (2,)
    reset = networks.reset_carry(carry, networks.initial_carry(config, 2), jnp.array([True, False]))
    for leaf_new, leaf_old in zip(jax.tree.leaves(reset), jax.tree.leaves(carry), strict=True):
        assert float(jnp.abs(leaf_new[0]).sum()) == 0.0
        np.testing.assert_array_equal(leaf_new[1], leaf_old[1])


def test_gru_and_lstm_keep_their_parameter_tree():
    # recorded runs depend on it: flax derives the init RNG from these module names
    net = networks.RecurrentActorCritic(3, True, CoreConfig(name="gru", size=4), (4,))
    params = net.init(jax.random.key(0), jnp.zeros((1, 4)), jnp.zeros((1, 2)), jnp.ones(1, bool))
    assert set(params["params"]) == {"embed", "memory", "policy_head", "value_head"}
    assert set(params["params"]["memory"]) == {"GRUCell_0"}


@pytest.mark.parametrize("head_sizes", [(), (6,)])
@pytest.mark.parametrize("core", ["gru", "lstm", "transformer", "lru", "memory"])
def test_unroll_equals_stepping_with_resets(core, head_sizes):
    config = CoreConfig(name=core, size=8, heads=2, slots=3, slot_size=4, max_len=8)
    net = networks.RecurrentActorCritic(3, True, config, (8,), head_sizes=head_sizes)
    obs = jax.random.normal(jax.random.key(1), (7, 2, 5))  # [T, B, D]
    first = jnp.zeros((7, 2), bool).at[0].set(True).at[4, 0].set(True)
    carry = networks.initial_carry(config, 2)
    params = net.init(jax.random.key(0), carry, obs[0], first[0])
    logits, value = networks.unroll(net, params, obs, first)
    for t in range(7):
        carry, (logits_t, value_t) = net.apply(params, carry, obs[t], first[t])
        np.testing.assert_allclose(logits[t], logits_t, atol=1e-5)
        np.testing.assert_allclose(value[t], value_t, atol=1e-5)


def test_head_layers_read_the_core_output_and_the_embedding():
    config = CoreConfig(name="gru", size=4)
    net = networks.RecurrentActorCritic(3, True, config, (5,), head_sizes=(7,))
    carry, first = networks.initial_carry(config, 1), jnp.ones(1, bool)
    params = net.init(jax.random.key(0), carry, jnp.zeros((1, 2)), first)
    assert set(params["params"]) == {"embed", "memory", "policy_head", "value_head", "read_out"}
    kernel = params["params"]["read_out"]["Dense_0"]["kernel"]
    assert kernel.shape == (4 + 5, 7)  # [core output, embedding] -> 7 units
    # the read-out sees the embedding directly: zeroing its rows changes the policy
    cut = jax.tree.map(lambda x: x, params)
    cut["params"]["read_out"]["Dense_0"]["kernel"] = kernel.at[4:].set(0.0)
    obs = jnp.array([[1.0, -2.0]])
    _, (logits, _) = net.apply(params, carry, obs, first)
    _, (logits_cut, _) = net.apply(cut, carry, obs, first)
    assert not np.allclose(logits, logits_cut)


def test_gaussian_log_prob_entropy_kl_closed_form():
    mean, log_std = jnp.array([[0.5, -1.0]]), jnp.log(jnp.array([[2.0, 0.5]]))
    action = jnp.array([[1.5, -1.0]])
    # log N(1.5; 0.5, 2) + log N(-1; -1, 0.5) = (-0.125 - ln 2 - 0.919) + (0 - ln .5 - 0.919)
    expected = (
        -0.125 - np.log(2) - 0.5 * np.log(2 * np.pi) + (-np.log(0.5) - 0.5 * np.log(2 * np.pi))
    )
    np.testing.assert_allclose(
        networks.log_prob((mean, log_std), action, False), [expected], rtol=1e-5
    )
    np.testing.assert_allclose(
        networks.entropy((mean, log_std), False),
        [np.log(2) + np.log(0.5) + np.log(2 * np.pi * np.e)],
        rtol=1e-5,
    )
    # KL(N(0,1) || N(1,2)) = ln 2 + (1 + 1) / 8 - 1/2
    p = (jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    q = (jnp.ones((1, 1)), jnp.log(jnp.full((1, 1), 2.0)))
    np.testing.assert_allclose(
        networks.kl_divergence(p, q, False), [np.log(2) + 0.25 - 0.5], rtol=1e-5
    )


def test_categorical_log_prob_and_kl():
    logits = jnp.log(jnp.array([[0.2, 0.8]]))
    np.testing.assert_allclose(
        networks.log_prob(logits, jnp.array([1]), True), [np.log(0.8)], rtol=1e-6
    )
    q = jnp.log(jnp.array([[0.5, 0.5]]))
    np.testing.assert_allclose(
        networks.kl_divergence(logits, q, True), [0.2 * np.log(0.4) + 0.8 * np.log(1.6)], rtol=1e-5
    )


def test_unknown_core_and_activation():
    with pytest.raises(ConfigError, match="memory core"):
        networks.make_core("transformer", 8)
    with pytest.raises(ConfigError, match="activation"):
        networks.activation("sigmoidish")
