"""ablate: plans, text-minimal variants kohya accepts, quoting, and bad inputs."""

import difflib
import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import toml
from click.testing import CliRunner
from conftest import BAD, GOOD, write_run

from lora_audit.ablate.plan import change_sets, plan
from lora_audit.cli import main
from lora_audit.errors import EvidenceError
from lora_audit.evidence import load_run
from lora_audit.kohya.catalog import catalog

EXAMPLE = Path(__file__).resolve().parent.parent / "runs" / "examples" / "bespoke-punks"

COMMENTED = """\
# my SD1.5 config
[model]
pretrained_model_name_or_path = "runwayml/stable-diffusion-v1-5"  # base

[network]
network_module = "networks.lora"
network_dim = 32      # rank
network_alpha = 16

[training]
train_data_dir = "img"
resolution = "512,512"
train_batch_size = 4
shuffle_caption = true
keep_tokens = 2
output_name = "mine"
"""


def _changed_lines(a: str, b: str) -> list[str]:
    return [ln for ln in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---")) and ln[1:].strip()]


def test_variant_of_a_toml_baseline_is_the_file_with_only_the_changed_lines(tmp_path):
    good = write_run(tmp_path, "good", COMMENTED, "good")
    bad = write_run(tmp_path, "bad", COMMENTED.replace("network_dim = 32      # rank", "network_dim = 64"), "bad")
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    original = (good / "config.toml").read_text()
    variant = (out / "ofat-network-dim" / "config.toml").read_text()
    changed = _changed_lines(original, variant)
    removed = [ln for ln in changed if ln.startswith("-")]
    added = [ln for ln in changed if ln.startswith("+")]
    # only network_dim and the per-variant output name/dir (no logging_dir: the run had none and --log was not given)
    assert removed == ["-network_dim = 32      # rank", '-output_name = "mine"']
    assert {ln.split("=")[0].strip("+ ") for ln in added} == {"network_dim", "output_name", "output_dir"}
    assert "+network_dim = 64      # rank" in added  # edited at its line: the user's comment kept
    assert "# my SD1.5 config" in variant and "[network]" in variant  # comments and sections kept
    control = (out / "control" / "config.toml").read_text()
    assert {ln.split("=")[0].strip("+- ") for ln in _changed_lines(original, control)} == {"output_name", "output_dir"}
    # --log: a logging_dir in every variant, recorded in variant.json's changes
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(tmp_path / "s2"),
                                  "--log"])
    assert r.exit_code == 0, r.output
    assert tomllib.loads((tmp_path / "s2" / "control" / "config.toml").read_text())["logging_dir"] == "logs"
    record = json.loads((tmp_path / "s2" / "control" / "variant.json").read_text())
    assert {"param": "logging_dir", "from": None, "to": "logs", "to_origin": "explicit",
            "per_variant": True} in record["changes"]


def test_generated_configs_parse_with_both_toml_readers_and_use_kohya_keys_and_types(tmp_path):
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", str(EXAMPLE), "--good", "SD15_PERFECT", "--bad", "SDXL_Current",
                                  "--out", str(out), "--sweep", "network_dim=16,32,64"])
    assert r.exit_code == 0, r.output
    configs = sorted(out.glob("*/config.toml"))
    assert len(configs) > 10
    cat = catalog()
    for cfg in configs:
        text = cfg.read_text()
        a, b = tomllib.loads(text), toml.loads(text)  # toml 0.10.2: what sd-scripts reads it with
        assert a == b, cfg
        for key, value in a.items():
            assert key in cat, f"{cfg}: {key} is not a kohya argument"
            assert cat.check_config_value(key, value) is None, (cfg, key, value)
    sweep = tomllib.loads((out / "sweep-network-dim-16" / "config.toml").read_text())
    assert sweep["network_dim"] == 16 and isinstance(sweep["network_dim"], int)


def test_example_study_has_option_a_option_b_and_full_ofat(tmp_path):
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", str(EXAMPLE), "--good", "SD15_PERFECT", "--bad", "SD15_bespoke_baby",
                                  "--bad", "SDXL_Current", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    ids = {v["id"]: v for v in data["variants"]}
    # Option A: the good script with only network_dim changed to the failed run's 64
    a = ids["ofat-network-dim-sd15-bespoke-baby"]
    assert a["changes"] == [{"param": "network_dim", "from": 32, "to": 64, "to_origin": "inferred"}]
    assert tomllib.loads((out / a["id"] / "config.toml").read_text())["network_dim"] == 64
    # Option B: SDXL with the good run's parameters: the architecture switch as one atomic change
    b = ids["ofat-architecture-sdxl-current"]
    assert {c["param"] for c in b["changes"]} >= {"training_script", "pretrained_model_name_or_path"}
    assert "sdxl_train_network.py" in (out / b["id"] / "lora-audit-run.sh").read_text()
    cfg_b = tomllib.loads((out / b["id"] / "config.toml").read_text())
    assert cfg_b["pretrained_model_name_or_path"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert cfg_b["network_dim"] == 32 and cfg_b["shuffle_caption"] is True
    atomic = {c["id"]: c for c in data["change_sets"] if c["atomic_reason"]}
    assert "architecture-sdxl-current" in atomic
    # full OFAT: one variant per change set, plus the control; a change kohya ignores is listed as skipped
    assert "control" in ids
    skipped = [s["id"] for s in data["skipped"] if s["id"].endswith("-sdxl-current")]
    assert skipped == ["ofat-bucket-no-upscale-sdxl-current"]  # enable_bucket is off in SD15_PERFECT
    assert len([i for i in ids if i.endswith("-sdxl-current")]) + len(skipped) == len(
        [c for c in data["change_sets"] if c["id"].endswith("-sdxl-current")])
    variant = json.loads((out / a["id"] / "variant.json").read_text())
    assert set(variant) >= {"id", "baseline", "changes", "hash"}


def test_reverse_and_groups(two_runs, tmp_path):
    good, bad = (load_run(p) for p in two_runs)
    rev = plan(good, [bad], "reverse")
    v = next(x for x in rev.variants if x.id == "reverse-network-dim")
    assert v.baseline == "bad" and v.changes[0].to == 32
    groups = plan(good, [bad], "groups")
    ids = {x.id for x in groups.variants}
    assert "group-noise-regularization" in ids and "group-captions-data" in ids


def test_inert_partner_moves_with_its_parameter(two_runs):
    sets, _ = change_sets(*(load_run(p) for p in two_runs))
    shuffle = next(s for s in sets if "shuffle_caption" in s.params)
    assert set(shuffle.params) == {"shuffle_caption", "keep_tokens"} and "only with" in shuffle.atomic_reason


def test_output_name_is_quoted_never_executed(tmp_path):
    evil = COMMENTED.replace('output_name = "mine"', 'output_name = "x; touch /tmp/pwned-by-lora-audit"')
    good = write_run(tmp_path, "good", evil, "good")
    bad = write_run(tmp_path, "bad", evil.replace("network_dim = 32", "network_dim = 8"), "bad")
    sd = tmp_path / "sd scripts; touch pwned"
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["--sd-scripts", str(sd), "ablate", "--good", str(good), "--bad", str(bad),
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    cfg = tomllib.loads((out / "ofat-network-dim" / "config.toml").read_text())["training"]
    assert cfg["output_name"] == "x; touch /tmp/pwned-by-lora-audit-ofat-network-dim"
    sh = out / "ofat-network-dim" / "lora-audit-run.sh"
    # run the script with a stand-in `accelerate` that prints its arguments: nothing else may run
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "accelerate").write_text('#!/bin/sh\nfor a in "$@"; do echo "ARG:$a"; done\n')
    (bindir / "accelerate").chmod(0o755)
    res = subprocess.run(["bash", str(sh)], capture_output=True, text=True, env={"PATH": f"{bindir}:/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert f"ARG:{sd}/train_network.py" in res.stdout.splitlines()
    assert not (tmp_path / "pwned").exists() and not Path("/tmp/pwned-by-lora-audit").exists()


@pytest.mark.parametrize("args,message", [
    (["--bad", "{good}"], "nothing to ablate"),
    (["--bad", "{bad}", "--sweep", "network_dims=8,16"], "did you mean network_dim?"),
    (["--bad", "{bad}", "--sweep", "network_dim=big"], "network_dim expects int"),
    (["--bad", "nowhere"], "no run named 'nowhere'"),
])
def test_bad_inputs(tmp_path, args, message):
    good = write_run(tmp_path, "good", GOOD, "good")
    bad = write_run(tmp_path, "bad", BAD, "bad")
    args = [a.format(good=good, bad=bad) for a in args]
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), *args, "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_identical_runs_raise(tmp_path):
    a = load_run(write_run(tmp_path, "a", GOOD))
    b = load_run(write_run(tmp_path, "b", GOOD))
    with pytest.raises(EvidenceError, match="nothing to ablate"):
        plan(a, [b])


def test_script_baseline_variant_is_the_script_with_only_the_changed_lines(tmp_path):
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", str(EXAMPLE), "--good", "SD15_PERFECT", "--bad", "SDXL_Current",
                                  "--out", str(out)])
    assert r.exit_code == 0, r.output
    original = (EXAMPLE / "sd15_perfect" / "runpod_train_sd15.sh").read_text()
    edited = (out / "ofat-network-dim" / "runpod_train_sd15.sh").read_text()
    changed = _changed_lines(original, edited)
    assert [ln for ln in changed if ln.startswith("-")] == [
        '-  --output_dir="$OUT_DIR" \\', '-  --output_name="$NAME" \\', "-  --network_dim=32 \\"]
    assert "+  --network_dim=128 \\" in changed
    removed = _changed_lines(original, (out / "ofat-shuffle-caption" / "runpod_train_sd15.sh").read_text())
    assert "-  --shuffle_caption \\" in removed and "-  --keep_tokens=2 \\" in removed
    arch = (out / "ofat-architecture" / "runpod_train_sd15.sh").read_text()
    assert "sdxl_train_network.py" in arch and "stable-diffusion-xl-base-1.0" in arch
    variant_json = json.loads((out / "ofat-network-dim" / "variant.json").read_text())
    assert variant_json["edited_script"] == "runpod_train_sd15.sh"


def test_edited_script_quotes_values_and_runs_nothing_else(tmp_path):
    from lora_audit.ablate.script_edit import edit_script

    text = "accelerate launch train_network.py \\\n  --output_name=old \\\n  --seed=1\n"
    evil = "x; touch pwned-by-edit $(touch pwned2)"
    edited = edit_script(text, "shell", {"output_name": (evil, False), "network_dim": (8, False)},
                         {"output_name": 2, "seed": 3})
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "accelerate").write_text('#!/bin/sh\nfor a in "$@"; do echo "ARG:$a"; done\n')
    (bindir / "accelerate").chmod(0o755)
    (tmp_path / "v.sh").write_text(edited)
    res = subprocess.run(["bash", "v.sh"], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": f"{bindir}:/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert f"ARG:--output_name={evil}" in res.stdout.splitlines()
    assert "ARG:--network_dim=8" in res.stdout.splitlines()
    assert not (tmp_path / "pwned-by-edit").exists() and not (tmp_path / "pwned2").exists()


def test_gpu_hours_from_steps_and_a_kohya_log(tmp_path):
    good = write_run(tmp_path, "good", GOOD, "good", '[dataset]\nimages = 100\nrepeats = 2\n')
    bad = write_run(tmp_path, "bad", BAD, "bad", '[dataset]\nimages = 100\nrepeats = 2\n')
    log = tmp_path / "train.log"
    log.write_text("steps:  10%|#         | 5/50 [00:10<01:30,  2.00s/it, avr_loss=0.1]\r"
                   "steps:  12%|#         | 6/50 [00:12<01:28,  2.00s/it, avr_loss=0.1]\n")
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--dry-run", "--json",
                                  "--seconds-per-step", str(log)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    steps = {v["id"]: v["steps"] for v in data["variants"]}
    assert steps["control"] == 10 * 50  # 200 images per epoch / batch 4, 10 epochs
    assert steps["ofat-train-batch-size"] == 10 * 100
    assert data["seconds_per_step"] == 2.0
    assert data["gpu_hours"] == round(sum(steps.values()) * 2.0 / 3600, 2)
