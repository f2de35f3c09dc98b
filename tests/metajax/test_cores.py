"""Memory cores: step mode equals sequence mode, trials never leak, gradients, options."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import cores
from metajax.cores import CoreConfig, make_core
from metajax.cores.lru import linear_scan
from metajax.errors import ConfigError

T, B, D = 10, 3, 4
CONFIGS = {
    "gru": CoreConfig("gru", size=8),
    "lstm": CoreConfig("lstm", size=8),
    "transformer": CoreConfig("transformer", size=8, heads=2, layers=2, max_len=16),
    "transformer_window_gate": CoreConfig("transformer", size=8, heads=2, window=3, gate=True),
    "lru": CoreConfig("lru", size=8, layers=2),
    "memory": CoreConfig("memory", size=8, slots=4, slot_size=4),
}


def random_trials(seed: int) -> tuple[jax.Array, jax.Array]:
    """Inputs [T, B, D] and start flags [T, B] with a start at t=0 and random ones after."""
    key_x, key_first = jax.random.split(jax.random.key(seed))
    first = jax.random.bernoulli(key_first, 0.25, (T, B)).at[0].set(True)
    return jax.random.normal(key_x, (T, B, D)), first


@functools.cache
def built(name: str):
    """(core, params, jitted run(params, x, first) -> (sequence y, step y, final state, grads))."""
    core = make_core(CONFIGS[name])
    x, first = random_trials(0)
    params = jax.jit(core.init)(jax.random.key(1), x, first)

    def run(params, x, first):
        def body(state, inputs):
            return core.apply(params, state, *inputs, method="step")

        state, y_step = jax.lax.scan(body, core.initial_state(x.shape[1]), (x, first))
        loss = lambda p: jnp.sum(core.apply(p, x, first) ** 2)
        return core.apply(params, x, first), y_step, state, jax.grad(loss)(params)

    return core, params, jax.jit(run)


@pytest.mark.parametrize("name", CONFIGS)
def test_step_mode_equals_sequence_mode(name):
    core, params, run = built(name)
    x, first = random_trials(2)
    y_seq, y_step, state, _ = run(params, x, first)
    assert y_seq.shape == (T, B, CONFIGS[name].size)
    np.testing.assert_allclose(y_step, y_seq, atol=1e-5, rtol=1e-5)
    fresh = core.initial_state(B)  # the carried state keeps its shapes (cache never grows)
    assert jax.tree.map(jnp.shape, state) == jax.tree.map(jnp.shape, fresh)


@pytest.mark.parametrize("name", CONFIGS)
def test_nothing_crosses_a_trial_boundary(name):
    _, params, run = built(name)
    x, first = random_trials(3)
    steps = jnp.arange(T)[:, None]
    last_start = jnp.max(jnp.where(first, steps, 0), axis=0)  # [B]
    earlier = steps < last_start  # [T, B]: steps of the trials before the last one
    x_changed = jnp.where(earlier[..., None], 5.0 * x + 1.0, x)
    outputs, outputs_changed = run(params, x, first)[:2], run(params, x_changed, first)[:2]
    for y, y_changed in zip(outputs, outputs_changed, strict=True):  # sequence, then step mode
        assert not np.allclose(y[earlier], y_changed[earlier])
        np.testing.assert_allclose(y[~earlier], y_changed[~earlier], atol=1e-6)


@pytest.mark.parametrize("name", CONFIGS)
def test_a_trial_gives_the_same_outputs_wherever_it_starts(name):
    _, params, run = built(name)
    trial, _ = random_trials(4)
    junk, _ = random_trials(5)
    at_zero = jnp.zeros((T, B), bool).at[0].set(True).at[6].set(True)
    at_four = jnp.zeros((T, B), bool).at[0].set(True).at[4].set(True)
    x_late = jnp.concatenate([junk[:4], trial[:6]])
    y_zero, y_late = run(params, trial, at_zero)[0], run(params, x_late, at_four)[0]
    np.testing.assert_allclose(y_late[4:], y_zero[:6], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
def test_gradients_finite_and_nonzero(name):
    _, params, run = built(name)
    leaves = jax.tree.leaves(run(params, *random_trials(6))[3])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0


def test_params_are_the_same_whichever_mode_initializes():
    core = make_core(CONFIGS["transformer_window_gate"])
    x, first = random_trials(0)
    from_sequence = jax.jit(core.init)(jax.random.key(1), x, first)
    init_step = jax.jit(functools.partial(core.init, method="step"))
    from_step = init_step(jax.random.key(1), core.initial_state(B), x[0], first[0])
    assert jax.tree.structure(from_sequence) == jax.tree.structure(from_step)
    for a, b in zip(jax.tree.leaves(from_sequence), jax.tree.leaves(from_step), strict=True):
        np.testing.assert_array_equal(a, b)


def test_transformer_cache_is_window_sized():
    core = make_core(CONFIGS["transformer_window_gate"])
    state = core.initial_state(B)
    assert state.keys.shape == (1, B, 3, 2, 4) and state.valid.shape == (B, 3)
    # without a window the cache holds max_len steps
    assert make_core(CONFIGS["transformer"]).initial_state(B).keys.shape == (2, B, 16, 2, 4)


def test_lru_associative_scan_equals_a_loop():
    rng = np.random.default_rng(7)
    shape = (T, B, 5)
    a = rng.uniform(0.5, 0.99, shape) * np.exp(1j * rng.uniform(0, 6.28, shape))
    b = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    first = rng.random((T, B)) < 0.3
    h, expected = np.zeros((B, 5), complex), []
    for t in range(T):  # h_t = a_t h_{t-1} + b_t, h restarts from 0 at a trial start
        h = np.where(first[t][:, None], 0.0, h) * a[t] + b[t]
        expected.append(h)
    a, b = a.astype(np.complex64), b.astype(np.complex64)
    for parallel in (True, False):
        scanned = jax.jit(linear_scan, static_argnums=3)(a, b, first, parallel)
        np.testing.assert_allclose(scanned, np.stack(expected), atol=1e-5)


def test_lru_eigenvalues_inside_the_unit_circle():
    _, params, _ = built("lru")
    for block in ("blocks_0", "blocks_1"):
        p = params["params"][block]["lru"]
        magnitude = jnp.exp(-jnp.exp(p["nu_log"]))
        assert bool(jnp.all((magnitude > 0.899) & (magnitude < 0.9991)))


@pytest.mark.parametrize(
    "options, trial_length, message",
    [
        (dict(name="mamba"), None, "unknown memory core 'mamba'; allowed: gru, lstm"),
        (dict(name="transformer", window=0), None, "window must be at least 1"),
        (dict(name="memory", slots=0), None, "slots must be at least 1"),
        (dict(name="gru", size=0), None, "size must be at least 1"),
        (dict(name="transformer", size=30, heads=4), None, r"heads \(4\) must divide"),
        (dict(name="transformer", size=12, heads=4), None, "must be even"),
        (dict(name="transformer", max_len=100), 101, "trial length 101 is longer"),
    ],
)
def test_bad_options_raise_one_line(options, trial_length, message):
    with pytest.raises(ConfigError, match=message) as error:
        make_core(CoreConfig(**options), trial_length)
    assert "\n" not in str(error.value)


def test_long_trials_are_fine_with_a_window_or_other_cores():
    CoreConfig("transformer", max_len=100, window=50).validate(1000)
    CoreConfig("lru", max_len=100).validate(1000)
    assert cores.names() == ["gru", "lstm", "transformer", "lru", "memory"]
