"""Statistics against hand-computed values, and the stats command."""

import json
import math
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from comparison_fixture import make_comparison  # noqa: E402

from lora_audit.commands.stats import stats_cmd  # noqa: E402
from lora_audit.votes.data import load_folder  # noqa: E402
from lora_audit.votes.stats import (  # noqa: E402
    bradley_terry,
    bt_prior_used,
    comparisons_needed,
    folder_stats,
    sign_test,
    summarize,
    versus_base,
    wilson,
)
from lora_audit.votes.store import Vote, VoteStore  # noqa: E402


def test_wilson_hand_computed():
    lo, hi = wilson(7, 10)  # the example
    assert (round(lo, 4), round(hi, 4)) == (0.3968, 0.8922)
    lo, hi = wilson(0, 10)  # z^2 / (n + z^2) = 3.8415 / 13.8415
    assert lo == 0 and hi == pytest.approx(0.27753, abs=1e-5)
    lo, hi = wilson(10, 10)
    assert lo == pytest.approx(0.72247, abs=1e-5) and hi == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_sign_test_hand_computed():
    assert sign_test(7, 3) == 0.34375  # 2 * (1 + 10 + 45 + 120) / 1024
    assert sign_test(3, 7) == 0.34375
    assert sign_test(9, 1) == 0.021484375  # 2 * 11 / 1024
    assert sign_test(10, 0) == 0.001953125  # 2 / 1024
    assert sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0


def test_comparisons_needed():
    # Wilson clears 50% once n > z^2 / (4 (p - 0.5)^2): 3.8415 / 0.16 = 24.01 -> 25
    assert comparisons_needed(0.7) == 25
    lo, _ = wilson(0.7 * 25, 25)
    lo24, _ = wilson(0.7 * 24, 24)
    assert lo > 0.5 > lo24
    assert comparisons_needed(0.3) == 25
    assert comparisons_needed(0.5) is None
    assert comparisons_needed(0.65, threshold=0.6) == 369  # 3.8415 * 0.24 / 0.0025 = 368.8


def test_bradley_terry_two_models_ratio_and_interval():
    fit = bradley_terry([("A", "B", 3.0), ("B", "A", 1.0)])
    (sa, lo_a, hi_a), (sb, _, _) = fit["A"], fit["B"]
    assert sa / sb == pytest.approx(3.0, rel=1e-9)
    assert sa * sb == pytest.approx(1.0)  # geometric mean 1
    # information of theta_A - theta_B is n p q = 4 * 3/4 * 1/4; theta_A = half of it: var 1/3
    se = math.sqrt(1 / 3)
    assert lo_a == pytest.approx(sa * math.exp(-1.959964 * se), rel=1e-5)
    assert hi_a == pytest.approx(sa * math.exp(1.959964 * se), rel=1e-5)
    assert not bt_prior_used([("A", "B", 3.0), ("B", "A", 1.0)])


def test_bradley_terry_three_models_is_the_mle():
    pairs = [("A", "B", 3), ("B", "A", 1), ("B", "C", 2), ("C", "B", 2), ("A", "C", 4), ("C", "A", 1),
             ("A", "C", 0.5), ("C", "A", 0.5)]
    fit = bradley_terry(pairs)
    s = {m: v[0] for m, v in fit.items()}
    assert math.prod(s.values()) == pytest.approx(1.0)
    for i in s:  # d logL / d theta_i = wins_i - sum_j n_ij s_i / (s_i + s_j) = 0 at the MLE
        wins = sum(w for a, _, w in pairs if a == i)
        expected = sum(w * s[i] / (s[i] + s[b if a == i else a]) for a, b, w in pairs if i in (a, b))
        assert wins - expected == pytest.approx(0, abs=1e-8)
    assert s["A"] > s["B"] > s["C"]
    assert all(lo < st < hi for st, lo, hi in fit.values())


def test_bradley_terry_prior_when_a_model_never_loses():
    pairs = [("A", "B", 1), ("A", "C", 1), ("B", "C", 1), ("C", "B", 1)]
    assert bt_prior_used(pairs)
    fit = bradley_terry(pairs)
    assert all(math.isfinite(v) for t in fit.values() for v in t)
    assert fit["A"][0] > fit["B"][0] == pytest.approx(fit["C"][0])


def _pairwise(folder: Path, outcomes: list[str], voter: str = "alice", kind: str = "human",
              other: str = "lora_a") -> None:
    cf = load_folder(folder)
    st = VoteStore(folder)
    for i, choice in enumerate(outcomes):
        it = cf.items[i % len(cf.items)]
        st.add(Vote(it.comparison_id, it.prompt, it.seed, "pairwise", ("base", other)[::1 - 2 * (i % 2)], choice,
                    voter, kind=kind, judge="grid_fit:max" if kind == "machine" else None))


def _folder(tmp_path: Path, models=None) -> Path:
    return make_comparison(tmp_path / "cmp", models=models or ["base", "lora_a"], prompts=[f"p{i}" for i in range(5)],
                           seeds=[1, 2])


def test_sentence_not_conclusive_at_7_of_10(tmp_path):
    d = _folder(tmp_path)
    _pairwise(d, ["lora_a"] * 7 + ["base"] * 3 + ["tie"])
    vb = folder_stats(d)["human"]["versus_base"][0]
    assert (vb["wins"], vb["losses"], vb["ties"], vb["n"]) == (7, 3, 1, 10)
    assert vb["p_value"] == 0.34375
    assert vb["guide_reading"] is None
    assert vb["sentence"] == ("lora_a wins 7 of 10 against base (70%, 95% CI 39.7–89.2%, sign test p = 0.344; "
                              "1 tie not counted): not conclusive yet; about 15 more comparisons would settle a 70% "
                              "win rate")
    assert versus_base(d, "lora_a") == {k: vb[k] for k in ("wins", "losses", "ties", "n", "win_rate", "ci_lo",
                                                           "ci_hi", "p_value")}


def test_guide_reading_only_when_the_interval_clears_it(tmp_path):
    d = _folder(tmp_path)
    _pairwise(d, ["lora_a"] * 9 + ["base"])  # 90%, but the interval starts at 59.6%
    vb = folder_stats(d)["human"]["versus_base"][0]
    assert vb["guide_band"] is None and "not conclusive for the guide's reading" in vb["sentence"]
    assert "significantly improved" not in vb["sentence"]
    _pairwise(d, ["lora_a"] * 6)  # 15 of 16: interval 71.7-98.9%
    vb = folder_stats(d)["human"]["versus_base"][0]
    assert vb["guide_band"] == "above 60%"
    assert "training significantly improved quality" in vb["sentence"]


def test_guide_low_band(tmp_path):
    d = _folder(tmp_path)
    _pairwise(d, ["base"] * 12)
    vb = folder_stats(d)["human"]["versus_base"][0]
    assert vb["guide_band"] == "below 40%" and "review training parameters" in vb["sentence"]


def test_best_of_counts_and_third_model_votes(tmp_path):
    d = make_comparison(tmp_path / "cmp", models=["base", "lora_a", "lora_b"], prompts=["p"], seeds=[1, 2, 3])
    cf = load_folder(d)
    st = VoteStore(d)
    shown = ("lora_b", "base", "lora_a")
    for it, choice in zip(cf.items, ["lora_a", "lora_b", "both_bad"]):
        st.add(Vote(it.comparison_id, it.prompt, it.seed, "best-of", shown, choice, "bob"))
    s = summarize(st.votes(), cf)
    per = {m["model"]: m for m in s["human"]["models"]}
    assert per["lora_a"]["wins"] == 1 and per["lora_a"]["appearances"] == 3 and per["lora_a"]["both_bad"] == 1
    assert per["base"]["wins"] == 0 and per["base"]["losses"] == 2
    assert per["base"]["chance_rate"] == pytest.approx(1 / 3)
    vb = {v["model"]: v for v in s["human"]["versus_base"]}
    # lora_a's vote beats base; lora_b's vote says nothing about lora_a vs base; both_bad is a tie
    assert (vb["lora_a"]["wins"], vb["lora_a"]["losses"], vb["lora_a"]["ties"]) == (1, 0, 1)
    assert (vb["lora_b"]["wins"], vb["lora_b"]["losses"], vb["lora_b"]["ties"]) == (1, 0, 1)
    bt = s["human"]["bradley_terry"]
    assert {x["model"] for x in bt["strengths"]} == {"base", "lora_a", "lora_b"}
    assert bt["strengths"][-1]["model"] == "base"
    assert bt["prior"] is None  # the both_bad vote is half a win each way: everyone won and lost something


def test_human_and_machine_apart(tmp_path):
    d = _folder(tmp_path)
    assert "machine" not in folder_stats(d)
    assert not (d / "votes.sqlite").exists()  # reading statistics creates no vote store
    _pairwise(d, ["lora_a"] * 3)
    _pairwise(d, ["base"] * 5, voter="judge:grid_fit:max", kind="machine")
    s = folder_stats(d)
    assert s["human"]["versus_base"][0]["wins"] == 3 and s["human"]["versus_base"][0]["losses"] == 0
    assert s["machine"]["versus_base"][0]["losses"] == 5 and s["machine"]["judges"] == ["grid_fit:max"]
    assert versus_base(d, "lora_a", kind="machine")["losses"] == 5
    assert versus_base(d, "lora_a", kind=None)["n"] == 8
    assert "human" not in folder_stats(d, kind="machine")


def test_stats_command(tmp_path):
    d = _folder(tmp_path)
    _pairwise(d, ["lora_a"] * 7 + ["base"] * 3)
    r = CliRunner().invoke(stats_cmd, [str(d)])
    assert r.exit_code == 0, r.output
    assert "lora_a wins 7 of 10 against base (70%, 95% CI 39.7–89.2%" in r.output
    assert "human votes: 10 from 1 voter (alice)" in r.output
    r = CliRunner().invoke(stats_cmd, [str(d), "--json", "--kind", "human"])
    data = json.loads(r.output)
    assert data["human"]["versus_base"][0]["p_value"] == 0.34375


def test_stats_command_bad_folder(tmp_path):
    r = CliRunner().invoke(stats_cmd, [str(tmp_path / "missing")])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and r.output.startswith("error: ") and "missing" in r.output
    (tmp_path / "comparison.json").write_text("{not json")
    r = CliRunner().invoke(stats_cmd, [str(tmp_path)])
    assert r.exit_code == 2 and "comparison.json:1: invalid JSON" in r.output and "Traceback" not in r.output
