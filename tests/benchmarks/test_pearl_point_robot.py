"""benchmarks.pearl_point_robot: the learning curve (--eval-every) and --time-budget."""

import json

from benchmarks import common, pearl_point_robot

TINY = """
[env]
name = "point-robot-dense"
[env.options]
num_train_tasks = 4
num_test_tasks = 3
[learner]
num_tasks = 2
batch_size = 8
context_batch_size = 8
gradient_steps = 2
collect_tasks = 2
initial_steps = 20
prior_steps = 20
posterior_steps = 20
rl_capacity = 200
hidden_sizes = [8]
encoder_hidden_sizes = [8]
eval_episodes = 3
[run]
iterations = 3
chunk = 1
"""


def test_curve_is_saved_after_every_point_and_ends_with_the_final_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    saved = []
    real_write = common.write_results

    def spy(stem, payload, text):
        saved.append(json.loads(json.dumps(payload, default=str)))
        return real_write(stem, payload, text)

    monkeypatch.setattr(pearl_point_robot, "write_results", spy)
    (result,) = pearl_point_robot.main(
        ["--configs", str(config), "--eval-every", "2", "--stem", "curve"]
    )
    assert [p["iteration"] for p in result["curve"]] == [0, 2, 3]
    steps = [p["env_steps"] for p in result["curve"]]
    assert steps == sorted(steps) and steps[0] > 0  # the initial collection counts
    # the last point is the final evaluation, reported in full
    assert result["curve"][-1]["K=3"] == result["performance"]["K=3"]["mean"]
    # a partial save after the intermediate point, before the final one
    assert len(saved) == 2 and saved[0]["results"][0]["performance"] == {}
    assert [p["iteration"] for p in saved[0]["results"][0]["curve"]] == [0, 2]
    text = (tmp_path / "curve.md").read_text()
    assert "Learning curve of tiny (final)" in text and "| 2 |" in text


def test_time_budget_stops_training_early(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    (result,) = pearl_point_robot.main(
        ["--configs", str(config), "--time-budget", "1e-6", "--stem", "budget"]
    )
    assert result["iterations"] == 1 and result["stopped_by_time_budget"]
    assert set(result["performance"]) == {"K=1", "K=2", "K=3"}
