"""benchmarks.core_throughput: every row measured and written, phases where asked."""

from benchmarks import common, core_throughput


def test_tiny_run_writes_every_row(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    payload = core_throughput.main(
        [
            "--cores", "gru", "lru-sequential",
            "--lengths", "3",
            "--phase-lengths", "3",
            "--tasks", "2",
            "--width", "8",
            "--minibatches", "1",
            "--epochs", "1",
            "--updates", "1",
            "--stem", "tiny",
        ]
    )  # fmt: skip
    rows = payload["rows"]
    assert [r["core"] for r in rows] == ["gru", "lru-sequential"]
    assert all(r["env_steps_per_s"] > 0 and r["compile_s"] > 0 for r in rows)
    assert all(0 < r["act_share"] < 1 for r in rows)
    text = (tmp_path / "tiny.md").read_text()
    assert "| 3 | lru-sequential |" in text and "load" in text


def test_forward_flops_count_the_dense_work_per_env_step():
    import jax
    import numpy as np

    from metajax import envs
    from metajax.learners import rl2

    def config(core, **options):
        return rl2.Config(
            num_tasks=4,
            episodes_per_trial=6,
            core=core,
            core_size=16,
            hidden_sizes=(16,),
            **options,
        )

    gru = core_throughput.forward_flops(config("gru"), arms=3)
    env, tasks = envs.make("bernoulli-bandit", arms=3)
    params = rl2.make_learner(config("gru"), env, tasks).init(jax.random.key(0)).params
    kernels = [x.size for x in jax.tree.leaves(params) if x.ndim == 2]
    # every weight matrix is used once per step: 2 FLOPs per weight, plus the elementwise ops
    assert 2 * sum(kernels) <= gru <= 1.3 * 2 * sum(kernels)
    # the LRU's sequence mode (counted over a whole trial) and step mode do the same work
    sequential = core_throughput.forward_flops(config("lru", core_parallel=False), arms=3)
    parallel = core_throughput.forward_flops(config("lru", core_parallel=True), arms=3)
    np.testing.assert_allclose(parallel, sequential, rtol=0.1)
