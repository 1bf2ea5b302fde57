"""The whole comparison side on a real `lora-audit compare` folder (tiny SD1.x model): machine votes by a metric,
stats, the guide's exports, and the audit report linking it all."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from click.testing import CliRunner  # noqa: E402
from conftest import BAD, GOOD, write_run  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from test_compare import _train  # noqa: E402
from train_helpers import tiny_model  # noqa: E402

from lora_audit.cli import main  # noqa: E402


def test_compare_judge_stats_export_and_audit(tmp_path):
    trained = load_file(_train(tmp_path / "train", "sd15"))
    lora = tmp_path / "punk.safetensors"
    save_file({k: v * 40 if k.endswith("lora_up.weight") else v for k, v in trained.items()}, lora,
              metadata={"ss_base_model_version": "sd_v1"})
    study = tmp_path / "study"
    cmp = study / "compare"
    cli = CliRunner()
    r = cli.invoke(main, ["compare", "--base", str(tiny_model("sd15")), "--lora", f"{lora}@0.5,1", "--prompt",
                          "a knight", "--prompt", "a punk", "--seeds", "1,2,3", "--steps", "2", "--size", "64x64",
                          "--quiet", "--out", str(cmp)])
    assert r.exit_code == 0, r.output
    r = cli.invoke(main, ["vote", str(cmp), "--judge", "distance_to_base", "--json"])
    assert r.exit_code == 0, r.output
    votes = json.loads(r.output)
    assert len(votes) == 6 and all(v["kind"] == "machine" for v in votes)
    # the strong LoRA at full strength is always furthest from the base image: it wins every comparison
    assert {v["choice"] for v in votes} == {"punk @1"}

    r = cli.invoke(main, ["stats", str(cmp), "--json"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    assert stats["human"]["votes"] == 0 and stats["machine"]["votes"] == 6
    vs = {v["model"]: v for v in stats["machine"]["versus_base"]}
    assert (vs["punk @1"]["wins"], vs["punk @1"]["losses"]) == (6, 0)
    assert vs["punk @1"]["p_value"] == pytest.approx(0.03125)
    assert "punk @1 wins 6 of 6 against base" in vs["punk @1"]["sentence"]

    r = cli.invoke(main, ["export", str(cmp), "--format", "csv"])
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.output)))
    assert rows[0][:11] == ["comparison_id", "prompt", "seed", "model_name", "base_model", "lora", "lora_strength",
                            "generation_time_s", "winner", "notes", "completed_at"]
    assert len(rows) == 1 + 6 * 3
    assert {row[8] for row in rows[1:]} == {""}  # machine votes never fill the guide's (human) winner column
    r = cli.invoke(main, ["export", str(cmp), "--format", "json", "--out", str(tmp_path / "out.json")])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "out.json").read_text())
    assert list(data)[:3] == ["metadata", "comparisons", "statistics"]
    assert data["comparisons"][0]["machine_winner"] == "punk @1"

    runs = tmp_path / "runs"
    write_run(runs, "good", GOOD, "good")
    write_run(runs, "bad", BAD, "bad")
    report = tmp_path / "audit.md"
    r = cli.invoke(main, ["audit", str(runs), "--study", str(study), "--out", str(report)])
    assert r.exit_code == 0, r.output
    text = report.read_text()
    assert "[the comparison report](study/compare/report.md)" in text
    assert "Furthest from base: **punk @1**" in text
    assert "| punk @1 | 1.0 |" in text and "6 of 6 (100%" in text
