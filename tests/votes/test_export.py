"""Exports in the comparison guide's schemas, with winners and notes from the votes."""

import csv
import io
import json
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from comparison_fixture import make_comparison  # noqa: E402

from lora_audit.commands.stats import export_cmd  # noqa: E402
from lora_audit.votes.data import load_folder  # noqa: E402
from lora_audit.votes.export import export  # noqa: E402
from lora_audit.votes.store import Vote, VoteStore  # noqa: E402

GUIDE_HEADER = ("comparison_id,prompt,seed,model_name,base_model,lora,lora_strength,generation_time_s,winner,notes,"
                "completed_at")


def _voted(tmp_path: Path) -> Path:
    d = make_comparison(tmp_path / "cmp", models=["base", "lora_a"], prompts=["a knight", "a punk"], seeds=[1, 2],
                        metrics={"base": {"grid_fit": 0.5}, "lora_a": {"grid_fit": 0.9}})
    cf = load_folder(d)
    st = VoteStore(d)
    it1, it2, it3, _ = cf.items
    v = lambda it, choice, voter, notes="", shown=("lora_a", "base"): st.add(  # noqa: E731
        Vote(it.comparison_id, it.prompt, it.seed, "best-of", shown, choice, voter, notes=notes))
    v(it1, "lora_a", "alice", "crisper pixels")
    v(it1, "lora_a", "bob")
    v(it1, "base", "carol", "base looks better")  # outvoted 2 to 1
    v(it2, "base", "alice", "base looks better")
    v(it3, "tie", "alice")
    st.add(Vote(it3.comparison_id, it3.prompt, it3.seed, "best-of", ("base", "lora_a"), "lora_a", "judge:grid_fit:max",
                kind="machine", judge="grid_fit:max"))  # machine votes never set the winner
    return d


def test_csv_guide_columns_and_winner_index(tmp_path):
    d = _voted(tmp_path)
    text = export(d, "csv")
    assert text.splitlines()[0].startswith(GUIDE_HEADER + ",")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 8  # one per image
    by = {(r["comparison_id"], r["model_name"]): r for r in rows}
    assert by[("cmp-001-1", "base")]["winner"] == "1" and by[("cmp-001-1", "lora_a")]["winner"] == "1"
    assert by[("cmp-001-1", "base")]["notes"] == "crisper pixels | base looks better"
    assert by[("cmp-001-2", "lora_a")]["winner"] == "0"
    assert by[("cmp-002-1", "base")]["winner"] == "" and by[("cmp-002-1", "base")]["notes"] == "no winner: tie"
    assert by[("cmp-002-1", "base")]["machine_winner"] == "lora_a"
    assert by[("cmp-002-2", "base")]["winner"] == "" and by[("cmp-002-2", "base")]["human_votes"] == "0"
    assert by[("cmp-001-1", "lora_a")]["votes_for_model"] == "2"
    assert by[("cmp-001-1", "base")]["lora"] == "" and by[("cmp-001-1", "lora_a")]["grid_fit"] == "0.9"
    # the guide's pandas reading: base_wins = winner == 0, lora_wins = winner == 1 (per row: two rows a comparison)
    assert sum(r["winner"] == "1" for r in rows) == 2 and sum(r["winner"] == "0" for r in rows) == 2


def test_json_guide_keys(tmp_path):
    d = _voted(tmp_path)
    data = json.loads(export(d, "json"))
    assert list(data)[:3] == ["metadata", "comparisons", "statistics"]
    assert list(data["metadata"])[:3] == ["generated_at", "version", "total_comparisons"]
    assert data["metadata"]["version"] == "1.0.0" and data["metadata"]["total_comparisons"] == 4
    c = data["comparisons"][0]
    assert list(c)[:6] == ["comparison_id", "prompt", "seed", "models", "winner", "notes"]
    assert list(c["models"][0])[:4] == ["name", "base_model", "lora", "generation_time_s"]
    assert c["models"][0]["lora"] is None and c["winner"] == "lora_a" and len(c["votes"]) == 3
    assert [x["winner"] for x in data["comparisons"]] == ["lora_a", "base", None, None]
    s = data["statistics"]
    assert list(s)[:4] == ["total_comparisons", "comparisons_with_preference", "preference_rate", "model_wins"]
    assert (s["total_comparisons"], s["comparisons_with_preference"], s["preference_rate"]) == (4, 2, 50.0)
    assert s["model_wins"] == [{"model_name": "base", "wins": 1, "win_rate": 50.0},
                               {"model_name": "lora_a", "wins": 1, "win_rate": 50.0}]
    assert s["lora_audit"]["human"]["votes"] == 5 and "machine" in s["lora_audit"]


def test_export_command(tmp_path):
    d = _voted(tmp_path)
    r = CliRunner().invoke(export_cmd, [str(d), "--format", "csv"])
    assert r.exit_code == 0 and r.output.startswith(GUIDE_HEADER)
    out = tmp_path / "out" / "results.json"
    r = CliRunner().invoke(export_cmd, [str(d), "--format", "json", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["written"] == str(out)
    assert json.loads(out.read_text())["statistics"]["comparisons_with_preference"] == 2
    r = CliRunner().invoke(export_cmd, [str(tmp_path / "nope"), "--format", "json"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("error: ")
