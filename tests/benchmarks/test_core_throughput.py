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
