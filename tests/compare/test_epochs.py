"""compare --epochs without torch: kohya's per-epoch files found beside a LoRA, the best-epoch rule (votes, then
distance to reference, then CLIP score; ties to the earlier epoch), and the report section. The end-to-end run on
tiny models is test_compare.py::test_epochs_compares_every_epoch_and_picks_the_best."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "votes"))

from comparison_fixture import make_comparison  # noqa: E402

from lora_audit.compare.epochs import RULES, epoch_series, epoch_specs  # noqa: E402
from lora_audit.compare.schema import Comparison  # noqa: E402
from lora_audit.compare.spec import LoraSpec  # noqa: E402
from lora_audit.errors import EvidenceError  # noqa: E402
from lora_audit.votes.data import load_folder  # noqa: E402
from lora_audit.votes.stats import row_votes  # noqa: E402
from lora_audit.votes.store import Vote, VoteStore  # noqa: E402


def _stats(folder: Path, fd: dict[str, float] | None = None, clip: dict[str, float] | None = None) -> list[dict]:
    rows = [("base", None), ("toy e1", 1), ("toy e2", 2), ("toy", None)]
    out = []
    for name, _ in rows:
        lora = None if name == "base" else str(folder / ("toy.safetensors" if name == "toy" else
                                                           f"toy-{int(name[-1]):06d}.safetensors"))
        st = {"model_name": name, "lora": lora, "lora_strength": None if lora is None else 1.0,
              "metrics": {"clip_score": (clip or {}).get(name)}}
        if fd is not None:
            st["fd_clip"] = fd.get(name)
        out.append(st)
    return out


def test_epoch_files_beside_a_lora_are_found_in_training_order(tmp_path):
    for name in ("toy-000002.safetensors", "toy-000001.safetensors", "toy.safetensors", "toy-step00000010.safetensors",
                 "other-000001.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    specs = epoch_specs(LoraSpec(tmp_path / "toy.safetensors", (0.5, 1.0)))
    assert [(s.path.name, s.name, s.strengths) for s in specs] == [
        ("toy-000001.safetensors", "toy e1", (0.5, 1.0)), ("toy-000002.safetensors", "toy e2", (0.5, 1.0)),
        ("toy.safetensors", "toy", (0.5, 1.0))]
    # an epoch file given: the same series
    assert [s.name for s in epoch_specs(LoraSpec(tmp_path / "toy-000002.safetensors"))] == ["toy e1", "toy e2", "toy"]
    (tmp_path / "lone.safetensors").write_bytes(b"x")
    with pytest.raises(EvidenceError, match="no per-epoch files"):
        epoch_specs(LoraSpec(tmp_path / "lone.safetensors"))


def test_best_epoch_by_clip_score_then_distance_ties_to_the_earlier(tmp_path):
    cmp = SimpleNamespace(out=None)
    [s] = epoch_series(cmp, _stats(tmp_path, clip={"base": 20, "toy e1": 25.0, "toy e2": 31.0, "toy": 31.0}))
    assert (s.metric, s.best, s.best_epoch) == ("clip_score", "toy e2", 2)  # tie with the final file: earlier
    assert s.rule == RULES["clip_score"] and "ties go to the earlier epoch" in s.rule
    assert [(e.model_name, e.epoch, e.metric) for e in s.epochs] == [
        ("toy e1", 1, 25.0), ("toy e2", 2, 31.0), ("toy", None, 31.0)]
    # a distance to reference images wins over the CLIP score: lowest is best
    [s] = epoch_series(cmp, _stats(tmp_path, fd={"toy e1": 3.0, "toy e2": 5.0, "toy": 4.0},
                                   clip={"toy e1": 1.0, "toy e2": 9.0, "toy": 9.0}))
    assert (s.metric, s.best, s.best_epoch) == ("fd_clip", "toy e1", 1)
    # nothing to judge by: listed, no pick, the rule says what would give one
    [s] = epoch_series(cmp, _stats(tmp_path))
    assert s.best is None and s.metric is None and "--clip-model" in s.rule


def test_human_votes_pick_the_epoch_when_every_epoch_has_some(tmp_path):
    d = make_comparison(tmp_path / "cmp", models=["base", "toy e1", "toy e2", "toy"], seeds=[1])
    cf = load_folder(d)
    st = VoteStore(d)
    for it in cf.items:
        st.add(Vote(it.comparison_id, it.prompt, it.seed, "best-of", ("toy e1", "toy e2", "toy"), "toy e1", "alice"))
        st.add(Vote(it.comparison_id, it.prompt, it.seed, "best-of", ("toy e1", "toy e2", "toy"), "toy e2", "bob"))
    votes = row_votes(d, "human")  # what the compare command hands in (compare itself never reads votes.sqlite)
    [s] = epoch_series(SimpleNamespace(out=d, votes=votes),
                       _stats(tmp_path, clip={"toy e1": 1.0, "toy e2": 2.0, "toy": 3.0}))
    assert s.metric == "human_win_rate" and (s.best, s.best_epoch) == ("toy e1", 1)  # 2 of 4 each: the earlier
    assert [(e.votes, e.wins) for e in s.epochs] == [(4, 2), (4, 2), (4, 0)]


def test_comparison_json_and_report_carry_the_pick(tmp_path):
    from lora_audit.compare.export import write_report

    d = make_comparison(tmp_path / "cmp", models=["base", "toy e1", "toy"], seeds=[1])
    data = Comparison.model_validate_json((d / "comparison.json").read_text())
    data.epochs = epoch_series(SimpleNamespace(out=None), [
        {"model_name": "toy e1", "lora": "/x/toy-000001.safetensors", "lora_strength": 1.0,
         "metrics": {"clip_score": 30.0}},
        {"model_name": "toy", "lora": "/x/toy.safetensors", "lora_strength": 1.0, "metrics": {"clip_score": 20.0}}])
    out = data.to_data()
    assert out["epochs"][0]["best"] == "toy e1" and out["epochs"][0]["rule"] == RULES["clip_score"]
    assert Comparison.model_validate(out).epochs[0].best_epoch == 1  # what is written reads back
    out["metadata"].update(base_model={"path": "/m", "arch": "sd15", "pipeline": "p"},
                           settings={"steps": 2, "cfg": 7, "size": "64x64", "scheduler": "ddim", "seeds": [1],
                                     "prompts": ["a"]}, grids=[])
    out["statistics"]["furthest_from_base"] = None
    write_report(out, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "## Best epoch" in text and "toy @1: **toy e1**" in text
    assert "| toy e1 | 1 | 30.0000 |" in text and "| toy | final | 20.0000 |" in text
