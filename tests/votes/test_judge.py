"""Machine votes from a metric."""

import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from comparison_fixture import make_comparison  # noqa: E402

from lora_audit.commands.stats import one_line_errors  # noqa: E402
from lora_audit.errors import EvidenceError  # noqa: E402
from lora_audit.votes.judge import cast_machine_votes  # noqa: E402
from lora_audit.votes.stats import folder_stats  # noqa: E402
from lora_audit.votes.store import VoteStore  # noqa: E402

METRICS = {"base": {"grid_fit": 0.5, "png_bytes": 300, "palette": 40},
           "lora_a": {"grid_fit": 0.9, "png_bytes": 200, "palette": 16},
           "lora_b": {"grid_fit": 0.7, "png_bytes": 100, "palette": 16}}


def _folder(tmp_path, metrics=METRICS):
    return make_comparison(tmp_path / "cmp", metrics=metrics)  # 3 models, 2 prompts x 2 seeds


def test_best_of_max_and_min(tmp_path):
    d = _folder(tmp_path)
    votes = cast_machine_votes(d, "grid_fit")
    assert len(votes) == 4 and {v.choice for v in votes} == {"lora_a"}
    assert all(v.kind == "machine" and v.voter == "judge:grid_fit:max" and v.judge == "grid_fit:max" for v in votes)
    assert {v.choice for v in cast_machine_votes(d, "png_bytes")} == {"lora_b"}  # smaller wins by default
    assert {v.choice for v in cast_machine_votes(d, "grid_fit:min")} == {"base"}
    assert len(VoteStore(d).votes(kind="machine")) == 12 and not VoteStore(d).votes(kind="human")


def test_ties_and_pairwise(tmp_path):
    d = _folder(tmp_path)
    assert {v.choice for v in cast_machine_votes(d, "palette")} == {"tie"}  # lora_a and lora_b both 16
    pw = cast_machine_votes(d, "palette", mode="pairwise")
    assert len(pw) == 12  # 3 pairs x 4 items
    by_pair = {frozenset(v.shown): v.choice for v in pw if v.comparison_id == "cmp-001-1"}
    assert by_pair == {frozenset({"base", "lora_a"}): "lora_a", frozenset({"base", "lora_b"}): "lora_b",
                       frozenset({"lora_a", "lora_b"}): "tie"}
    m = folder_stats(d)["machine"]
    assert "human" in folder_stats(d) and m["judges"] == ["palette:min"]


def test_rerun_does_not_duplicate(tmp_path):
    d = _folder(tmp_path)
    assert len(cast_machine_votes(d, "grid_fit")) == 4
    assert cast_machine_votes(d, "grid_fit") == []
    assert cast_machine_votes(d, "grid_fit:max") == []  # the same judge spelt out
    assert len(VoteStore(d).votes()) == 4


def test_missing_value_and_direction(tmp_path):
    metrics = {m: dict(v, grid_k=4) for m, v in METRICS.items()}
    metrics["base"]["sharpness"] = 3.0  # lora_a and lora_b have none
    d = _folder(tmp_path, metrics)
    with pytest.raises(EvidenceError, match=r"model 'lora_a' has no sharpness value"):
        cast_machine_votes(d, "sharpness")
    with pytest.raises(EvidenceError, match=r"say grid_k:min or grid_k:max"):
        cast_machine_votes(d, "grid_k")
    with pytest.raises(EvidenceError, match=r"say grid_fit:min or grid_fit:max"):
        cast_machine_votes(d, "grid_fit:up")
    assert not VoteStore(d).votes()  # nothing stored on an error


def test_unknown_metric_exit_2(tmp_path):
    d = _folder(tmp_path)

    @click.command()
    @click.argument("folder", type=click.Path(path_type=Path))
    @click.option("--judge")
    @one_line_errors
    def judge_cmd(folder, judge):
        cast_machine_votes(folder, judge)

    r = CliRunner().invoke(judge_cmd, [str(d), "--judge", "beauty:max"])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1
    assert "no metric 'beauty'" in r.output and "grid_fit, png_bytes, palette" in r.output
    assert r.output.startswith(f"error: {d / 'comparison.json'}: ")
