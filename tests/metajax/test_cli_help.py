"""``--help`` pages: every option has a description, the learner's summary heads the page.

In-process (``cli.main``), not subprocesses: one jax import for the whole file.
"""

import dataclasses
import re

import pytest

from metajax import cli, learners
from metajax.runs import RunArgs
from metajax.train import TrainConfig

RL2_SUMMARY = (
    "RL² (Duan et al. 2016): a recurrent policy whose memory spans the K episodes of a trial."
)


def help_page(argv, capsys, monkeypatch) -> str:
    """The page ``metajax *argv`` prints; it must exit 0."""
    monkeypatch.setenv("COLUMNS", "100")  # one column of boxes, as on a usual terminal
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def option_descriptions(page: str) -> dict[str, str]:
    """``{"--flag": description}`` for every option row (defaults dropped).

    tyro draws boxes on a UTF-8 terminal and plain indented text elsewhere: a row is a line
    starting with a flag; its description continues on the lines indented deeper than it.
    """
    rows: dict[str, list[str]] = {}
    current, indent = None, 0
    for raw in page.splitlines():
        line = raw.rstrip().removesuffix("│").rstrip().removeprefix("│").rstrip()
        text = line.lstrip()
        dashes_only = set(text) <= {"-", "─"}
        if text.startswith("-") and not dashes_only:
            indent = len(line) - len(text)
            head = re.split(r"\s{2,}", text, maxsplit=1)
            current = head[0].split()[0].rstrip(",")
            rows[current] = [head[1] if len(head) > 1 else ""]
        elif current is not None and text and len(line) - len(text) > indent + 2:
            rows[current].append(text)
        else:
            current = None
    return {
        flag: re.sub(r"\((default: .*|required)\)$", "", " ".join(parts).strip()).strip()
        for flag, parts in rows.items()
    }


def first_text_after_usage(page: str) -> str:
    lines = [line for line in page.splitlines() if line.strip()]
    assert lines[0].startswith("usage: "), lines[0]
    return lines[1].strip()


@pytest.mark.parametrize("learner", learners.names())
def test_train_help_describes_every_option(learner, capsys, monkeypatch):
    page = help_page(["train", learner, "--help"], capsys, monkeypatch)
    assert first_text_after_usage(page) == learners.summary(learner)
    described = option_descriptions(page)
    config_cls, _ = learners.get(learner)
    for owner in (RunArgs, TrainConfig, config_cls):
        for field in dataclasses.fields(owner):
            flag = "--" + field.name.replace("_", "-")
            assert flag in described, (learner, flag, sorted(described))
            assert re.search(r"[A-Za-z]{2}", described[flag]), (learner, flag, described[flag])


def test_rl2_help_is_headed_by_its_summary(capsys, monkeypatch):
    page = help_page(["train", "rl2", "--help"], capsys, monkeypatch)
    assert first_text_after_usage(page) == RL2_SUMMARY
    assert "updates between checkpoints" in option_descriptions(page)["--checkpoint-every"]


def test_evaluate_help_describes_every_option(capsys, monkeypatch):
    for argv in (["evaluate", "--help"], ["evaluate", "no/such/run", "-h"]):
        page = help_page(argv, capsys, monkeypatch)
        assert first_text_after_usage(page) == cli.EVALUATE_SUMMARY
        described = option_descriptions(page)
        for field in dataclasses.fields(cli.EvaluateArgs):
            flag = "--" + field.name.replace("_", "-")
            assert re.search(r"[A-Za-z]{2}", described[flag]), (flag, described)


def test_sweep_and_list_help(capsys, monkeypatch):
    page = help_page(["sweep", "--help"], capsys, monkeypatch)
    assert first_text_after_usage(page) == cli.SWEEP_SUMMARY
    described = option_descriptions(page)
    assert described["--out"] and described["--dry-run"]
    page = help_page(["list", "--help"], capsys, monkeypatch)
    assert first_text_after_usage(page).startswith("The learners and envs")


def test_train_help_without_a_learner_lists_the_learners(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for name in learners.names():
        assert f"  {name} " in out and learners.summary(name) in out
