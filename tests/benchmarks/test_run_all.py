"""benchmarks.run_all runs each script, goes on past failures and timeouts, and reports them;
the comparison and throughput scripts run end to end at tiny sizes (slow)."""

import json
import sys

import pytest

from benchmarks import common, run_all


@pytest.fixture
def fake_benchmarks(tmp_path, monkeypatch):
    package = tmp_path / "benchmarks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text("import sys\nprint('good', sys.argv[1:])\n")
    (package / "bad.py").write_text("raise SystemExit(3)\n")
    (package / "slow.py").write_text("import time\ntime.sleep(30)\n")
    monkeypatch.setattr(run_all, "HERE", package)
    suite = [
        ("bad", []),
        ("good", ["--size", "1"]),
        ("absent", []),
        ("slow", []),
    ]
    monkeypatch.setitem(run_all.SUITES, "cpu", suite)
    written = {}
    monkeypatch.setattr(
        run_all, "write_results", lambda stem, payload, text: written.update({stem: payload})
    )
    return written


def test_runs_every_script_past_failures_and_reports_each(fake_benchmarks, capfd):
    code = run_all.main(["--suite", "cpu", "--timeout", "5"])
    assert code == 1
    (payload,) = fake_benchmarks.values()
    status = {e["script"]: e["status"] for e in payload["scripts"]}
    assert status == {
        "bad": "failed (exit 3)",
        "good": "ok",
        "absent": "missing",
        "slow": "timed out after 5 s",
    }
    out = capfd.readouterr().out
    assert "good ['--size', '1']" in out  # the size flags reached the script
    assert "| bad | failed (exit 3) |" in out and "| good | ok |" in out


def test_only_skip_and_dry_run(fake_benchmarks, capsys):
    assert run_all.main(["--only", "good", "bad", "--skip", "bad"]) == 0
    (payload,) = fake_benchmarks.values()
    assert [e["script"] for e in payload["scripts"]] == ["good"]
    assert run_all.main(["--dry-run"]) == 0
    assert "| slow | planned |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        run_all.main(["--only", "nope"])


def test_shipped_suites_name_existing_scripts():
    from pathlib import Path

    here = Path(run_all.__file__).parent
    for suite in run_all.SUITES.values():
        for name, flags in suite:
            assert (here / f"{name}.py").exists(), name
            assert all(isinstance(f, str) for f in flags)


@pytest.mark.slow
def test_compare_and_throughput_scripts_at_tiny_sizes(tmp_path, monkeypatch):
    from benchmarks import compare_learners, learner_throughput

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(learner_throughput, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["benchmarks/compare_learners.py"])
    payload = compare_learners.main(
        ["--size", "quick", "--learners", "rl2", "nope", "--budget", "2000", "--eval-tasks", "8"]
    )
    assert payload["learners"]["nope"]["skipped"].startswith("not registered")
    rl2 = payload["learners"]["rl2"]
    assert rl2["env_steps"] <= 2000 and rl2["updates"] >= 1
    assert len(rl2["reports"]["in_distribution"]["mean"]) == 4
    saved = json.loads((tmp_path / "compare_learners_cpu_quick.json").read_text())
    assert saved["meta"]["device"] and saved["meta"]["jax_version"]
    payload = learner_throughput.main(
        ["--learners", "rl2", "--max-tasks", "4", "--updates", "1", "--repeats", "1"]
    )
    rows = payload["rows"]
    assert [r["tasks"] for r in rows] == [1, 4] and all(r["env_steps_per_s"] > 0 for r in rows)
    assert (tmp_path / "learner_throughput_cpu.png").stat().st_size > 0
