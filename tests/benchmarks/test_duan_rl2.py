"""benchmarks.duan_rl2: any core at tiny sizes, stored baselines, curves and their plot."""

import json

from benchmarks import common, duan_rl2, duan_tuning


def test_stored_baselines_are_read_per_cell():
    rows = duan_rl2.stored_baselines("bandit", "pulls", 10, 5)
    assert "gittins" in {r["baseline"] for r in rows}
    assert duan_rl2.stored_baselines("bandit", "pulls", 10, 7) == []  # a cell never run


def test_a_tiny_run_with_curves_then_the_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    payload = duan_rl2.main(
        [
            "--cells", "3x2",
            "--mdp-episodes", "2",
            "--core", "lru",
            "--core-size", "8",
            "--num-tasks", "4",
            "--num-tasks-long", "4",
            "--env-steps", "24",
            "--test-tasks", "10",
            "--curve-points", "2",
            "--curve-tasks", "5",
            "--baselines", "none",
            "--work-dir", str(tmp_path / "work"),
        ]
    )  # fmt: skip
    (bandit,) = payload["bandits"]
    assert bandit["rl2"]["core"] == "lru" and bandit["rl2"]["updates"] == 2  # 24 / (4 x 3)
    assert [p["env_steps"] for p in bandit["rl2"]["curve"]] == [12, 24]
    (mdp,) = payload["mdps"]
    assert mdp["rl2"]["updates"] == 1 and mdp["paper"] == {}
    saved = json.loads((tmp_path / "duan_rl2_lru_cpu.json").read_text())
    assert saved["config"]["core"] == "lru"
    assert "| 3, 2 | lru |" in (tmp_path / "duan_rl2_lru_cpu.md").read_text()
    assert duan_rl2.main(["--plot"])["plot"] == str(tmp_path / "duan_rl2_curves_cpu.png")
    assert (tmp_path / "duan_rl2_curves_cpu.png").stat().st_size > 1000


def test_time_budget_stops_at_a_curve_point_and_resume_continues(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    tiny = ["--cells", "3x2", "--mdp-episodes", "--core-size", "8", "--num-tasks", "4",
            "--env-steps", "36", "--test-tasks", "10", "--curve-points", "3", "--curve-tasks", "5",
            "--baselines", "none", "--work-dir", str(tmp_path / "work"), "--anneal-lr"]  # fmt: skip
    config = duan_rl2.rl2_config(duan_rl2.parse_args(tiny), 3, 4, 1.0, 0.95, updates=3)
    assert config.lr_decay_updates == 3  # the schedule (and its count) resumes with the state
    first = duan_rl2.main([*tiny, "--time-budget", "0"])["bandits"][0]["rl2"]
    assert first["updates"] == 1 and first["planned_updates"] == 3  # stopped after point 1
    assert first["env_steps"] == 12 and len(first["curve"]) == 1
    run_dir = tmp_path / "work" / "gru" / "bandit_3x2"
    assert duan_rl2.latest_checkpoint(run_dir) == 1
    second = duan_rl2.main([*tiny, "--resume"])["bandits"][0]["rl2"]
    assert second["resumed_from"] == 1 and second["updates"] == 3
    assert [p["env_steps"] for p in second["curve"]] == [24, 36]
    duan_rl2.main([*tiny, "--resume"])  # the checkpoint holds every update: only evaluated
    assert "| 0 (evaluated from the checkpoint) |" in (tmp_path / "duan_rl2_cpu.md").read_text()
    (row,) = duan_tuning.load_runs(tmp_path)  # the tuning table resolves the cell's defaults
    assert row["settings"]["gae_lambda"] == 0.95 and row["settings"]["reward_scale"] == 1.0
    assert "| 0.001 → 0 |" in duan_tuning.markdown([row], common.run_metadata())
