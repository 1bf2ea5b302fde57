"""Votes feed the study: bisect good|bad --from-votes takes a round's verdicts from win rates against the base, and
the audit report links the comparison report and shows the win rates (human and machine apart)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comparison_fixture import make_comparison  # noqa: E402
from conftest import write_run  # noqa: E402
from test_bisect_cli import BAD, GOOD  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.votes.store import Vote, VoteStore  # noqa: E402


def _start(tmp_path: Path) -> tuple[Path, list[str]]:
    """A bisection past its first round (the good run with every change, judged bad from votes: reproduced), so
    the current round has two variants."""
    good = write_run(tmp_path, "good", GOOD, "good")
    bad = write_run(tmp_path, "bad", BAD, "bad")
    study = tmp_path / "study"
    r = CliRunner().invoke(main, ["bisect", "start", "--good", str(good), "--bad", str(bad), "--out", str(study),
                                  "--parallel", "4", "--json"])
    assert r.exit_code == 0, r.output
    first, = [v["id"] for v in json.loads(r.output)["variants"]]
    cmp = make_comparison(tmp_path / "round1", models=["base", f"{first} @1"])
    _votes(cmp, {f"{first} @1": (1, 9)})
    r = CliRunner().invoke(main, ["bisect", "bad", "--study", str(study), "--from-votes", str(cmp), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [(x["variant"], x["verdict"]) for x in data["from_votes"]] == [(first, "bad")]
    return study, [v["id"] for v in data["variants"]]


def _votes(folder: Path, wins: dict[str, tuple[int, int]], kind: str = "human") -> None:
    """``wins[model] = (w, l)``: w pairwise votes for the model against base, l for base."""
    store = VoteStore(folder)
    i = 0
    for model, (won, lost) in wins.items():
        for choice in [model] * won + ["base"] * lost:
            i += 1
            store.add(Vote(f"cmp-001-{i}", "a knight", i, "pairwise", ("base", model), choice,
                           "me" if kind == "human" else "judge:grid_fit:max", kind=kind,
                           judge=None if kind == "human" else "grid_fit:max"))


def test_bisect_verdicts_from_votes(tmp_path):
    study, (a,) = _start(tmp_path)
    cmp = make_comparison(tmp_path / "cmp", models=["base", f"{a} @0.5", f"{a} @1", "control @1"])
    _votes(cmp, {f"{a} @1": (19, 1), f"{a} @0.5": (0, 5)})  # the verdict is the strength-1 row's
    cli = CliRunner()
    r = cli.invoke(main, ["bisect", "bad", "--study", str(study), "--from-votes", str(cmp)])
    assert r.exit_code == 2 and "mark no variant bad" in r.output
    r = cli.invoke(main, ["bisect", "good", "--study", str(study), "--from-votes", str(cmp)])
    assert r.exit_code == 0, r.output
    assert f"{a}: wins 19 of 20 against base (95%, 95% CI 76-99%), human votes -> good" in r.output
    state = json.loads((study / "bisect.json").read_text())["state"]
    assert {t["id"]: t["verdict"] for rnd in state["rounds"] for t in rnd["tests"]}[a] == "good"
    nxt = json.loads(cli.invoke(main, ["bisect", "next", "--study", str(study), "--json"]).output)["variants"]
    b = nxt[0]["id"]
    cmp2 = make_comparison(tmp_path / "cmp2", models=["base", f"{b} @1"])
    _votes(cmp2, {f"{b} @1": (1, 9)})
    r = cli.invoke(main, ["bisect", "good", "--study", str(study), "--from-votes", str(cmp2), b])
    assert r.exit_code == 2, r.output
    assert f"{b}: wins 1 of 10 against base (10%, 95% CI 2-40%), human votes -> not good" in r.output
    assert r.output.strip().splitlines()[-1] == f"error: the votes in {cmp2} mark no variant good at threshold 0.6"
    r = cli.invoke(main, ["bisect", "bad", "--study", str(study), "--from-votes", str(cmp2), "--json"])
    assert r.exit_code == 0, r.output
    assert [(x["variant"], x["verdict"]) for x in json.loads(r.output)["from_votes"]] == [(b, "bad")]


def test_bisect_from_votes_bad_inputs(tmp_path):
    study, (a,) = _start(tmp_path)
    missing = make_comparison(tmp_path / "other", models=["base", "x @1"])
    r = CliRunner().invoke(main, ["bisect", "good", "--study", str(study), "--from-votes", str(missing)])
    assert r.exit_code == 2 and f"variant {a} is not in this comparison" in r.output
    r = CliRunner().invoke(main, ["bisect", "good", "--study", str(study), "--from-votes", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "not a folder" in r.output
    r = CliRunner().invoke(main, ["bisect", "good", "--study", str(study)])
    assert r.exit_code == 2 and "give --from-votes DIR" in r.output


def test_machine_votes_decide_when_there_are_no_human_votes(tmp_path):
    study, (a,) = _start(tmp_path)
    cmp = make_comparison(tmp_path / "cmp", models=["base", f"{a} @1"])
    _votes(cmp, {f"{a} @1": (1, 9)}, kind="machine")
    r = CliRunner().invoke(main, ["bisect", "good", "--study", str(study), "--from-votes", str(cmp),
                                  "--threshold", "0.7", "--json"])
    assert r.exit_code == 2 and "mark no variant good at threshold 0.7" in r.output
    r = CliRunner().invoke(main, ["bisect", "bad", "--study", str(study), "--from-votes", str(cmp),
                                  "--threshold", "0.7", "--json"])
    assert r.exit_code == 0, r.output
    row, = json.loads(r.output)["from_votes"]
    assert (row["kind"], row["wins"], row["n"], row["verdict"]) == ("machine", 1, 10, "bad")


def test_audit_report_links_the_comparison_and_shows_win_rates(tmp_path):
    good = write_run(tmp_path / "runs", "good", GOOD, "good")
    write_run(tmp_path / "runs", "bad", BAD, "bad")
    study = tmp_path / "study"
    cmp = make_comparison(study / "compare", models=["base", "v1 @1"])
    _votes(cmp, {"v1 @1": (7, 3)})
    _votes(cmp, {"v1 @1": (4, 0)}, kind="machine")
    out = tmp_path / "reports" / "audit.md"
    r = CliRunner().invoke(main, ["audit", str(good.parent), "--study", str(study), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "v1 @1 wins 7 of 10 against base (70%, 95% CI 39.7–89.2%" in r.output
    text = out.read_text()
    assert "[the comparison report](../study/compare/report.md)" in text
    assert "| v1 @1 | 1.0 | 10.00 |  | 7 of 10 (70%, 95% CI 39.7–89.2%) | 4 of 4 (100%, 95% CI 51.0–100.0%) |" in text
    assert "not conclusive yet" in text
    assert "Votes: 10 human, 4 machine (grid_fit:max)." in text
    r = CliRunner().invoke(main, ["audit", str(good.parent), "--study", str(tmp_path / "runs"), "--out", str(out)])
    assert r.exit_code == 2 and "no comparison in this study yet" in r.output


def test_an_inconclusive_win_rate_is_unsure_and_the_variant_is_asked_again_with_another_seed(tmp_path):
    """8 of 10 against base: 95% CI 49-94% holds the 60% threshold, so neither good nor bad is forced."""
    study, (a,) = _start(tmp_path)
    cmp = make_comparison(tmp_path / "cmp", models=["base", f"{a} @1"])
    _votes(cmp, {f"{a} @1": (8, 2)})
    r = CliRunner().invoke(main, ["bisect", "good", "--study", str(study), "--from-votes", str(cmp)])
    assert r.exit_code == 0, r.output
    assert f"{a}: wins 8 of 10 against base (80%, 95% CI 49-94%), human votes -> unsure (the interval holds the " \
           "threshold)" in r.output
    state = json.loads((study / "bisect.json").read_text())["state"]
    tests = [t for rnd in state["rounds"] for t in rnd["tests"]]
    asked, again = tests[-2], tests[-1]
    assert asked["id"] == a and asked["verdict"] == "unsure"
    assert again["changes"] == asked["changes"] and again["retry"] == 1 and "another seed" in again["purpose"]
    cfg = (study / again["id"] / "config.toml").read_text()
    assert "seed = 1042" in cfg, cfg  # the good run's seed 42, moved by 1000
