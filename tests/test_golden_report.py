"""The example study's audit report is a golden file.

Regenerate it (never edit it by hand) from the repository root with:
    lora-audit audit runs/examples/bespoke-punks --date 2025-11-10 --out reports/examples/bespoke-punks.md
"""

import json
import os
from pathlib import Path

from click.testing import CliRunner

from lora_audit.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "reports" / "examples" / "bespoke-punks.md"


def _audit(tmp_path, *extra):
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return CliRunner().invoke(main, ["audit", "runs/examples/bespoke-punks", "--date", "2025-11-10", *extra])
    finally:
        os.chdir(cwd)


def test_report_matches_golden_file(tmp_path):
    out = tmp_path / "report.md"
    r = _audit(tmp_path, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_text() == GOLDEN.read_text(), (
        "the report changed: if on purpose, regenerate the golden file with the command in this module's docstring")


def test_audit_finds_what_the_hand_analysis_found_and_more(tmp_path):
    r = _audit(tmp_path, "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    pairs = {(p["good"], p["bad"]): p for p in data["pairs"]}
    sdxl = pairs[("SD15_PERFECT", "SDXL_Current")]
    primary = {x for f in sdxl["findings"] if f["level"] == "primary" for x in f["params"]}
    # the seed's primary suspects
    assert {"network_dim", "multires_noise_iterations", "adaptive_noise_scale", "shuffle_caption"} <= primary
    changes = {c["param"]: c for c in sdxl["diff"]["changes"]}
    # what the hand analysis missed: max_token_length 225 -> 75, save_precision fp16 -> fp32, bucket_no_upscale
    assert changes["max_token_length"]["words"] == "REMOVED (was 225; kohya's default 75)"
    assert "max_token_length" in primary
    assert changes["save_precision"]["words"] == "REMOVED (was fp16; kohya's default fp32)"
    assert changes["bucket_no_upscale"]["kind"] == "removed" and changes["bucket_no_upscale"]["inert"]
    # and where it was wrong: multires_noise_discount unset is kohya's 0.3, the same value: nominal only
    assert changes["multires_noise_discount"]["nominal"] and changes["multires_noise_discount"]["kind"] == "same"
    # the failed SD1.5 run: dim from its size, and the size can't separate 64 @ fp16 from 32 @ fp32
    baby = pairs[("SD15_PERFECT", "SD15_bespoke_baby")]
    dim = {c["param"]: c for c in baby["diff"]["changes"]}["network_dim"]
    assert dim["values"]["SD15_bespoke_baby"] == {"value": 64, "origin": "inferred",
                                                   "source": dim["values"]["SD15_bespoke_baby"]["source"]}
    ambiguous = [f for f in baby["findings"] if f["id"].startswith("ambiguous:") and "network_dim" in f["params"]]
    assert ambiguous and "32" in ambiguous[0]["title"]
    assert any(f["level"] == "primary" and "network_dim" in f["params"] for f in baby["findings"])
