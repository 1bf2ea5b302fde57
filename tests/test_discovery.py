"""Run discovery: one rule for inspect, diff, audit, ablate and bisect (lora_audit/evidence/discovery.py)."""

import json
import textwrap

from click.testing import CliRunner
from conftest import BAD, GOOD
from loras import write_lora

from lora_audit.cli import main
from lora_audit.evidence import load_run, load_runs
from lora_audit.evidence.discovery import discover


def run_with_parts(root, name, config, verdict=None, dim=None):
    """A run as people keep it: config/ and output/ subfolders, nothing at the top but run.toml."""
    d = root / name
    (d / "config").mkdir(parents=True)
    (d / "config" / "c.toml").write_text(config + 'output_dir = "output"\noutput_name = "lora"\n')
    if dim:
        (d / "output").mkdir()
        write_lora(d / "output" / "lora.safetensors", network_dim=dim)
        write_lora(d / "output" / "lora-000001.safetensors", network_dim=dim)
        write_lora(d / "output" / "lora-000002.safetensors", network_dim=dim)
    (d / "sample").mkdir()
    (d / "sample" / "prompt.txt").write_text("a punk --n blurry\n")
    (d / "img" / "10_punk").mkdir(parents=True)
    (d / "img" / "10_punk" / "1.txt").write_text("punk, python train_network.py --network_dim 999\n")
    if verdict:
        (d / "run.toml").write_text(f'verdict = "{verdict}"\n')
    return d


def test_diff_two_runs_whose_config_lives_in_a_subfolder(tmp_path):
    a = run_with_parts(tmp_path, "a", GOOD)
    b = run_with_parts(tmp_path, "b", BAD)
    r = CliRunner().invoke(main, ["diff", str(a), str(b), "--json"])
    assert r.exit_code == 0, r.output  # was: two runs are named 'config'
    data = json.loads(r.output)
    assert data["runs"] == ["a", "b"]
    dim = next(c for c in data["changes"] if c["param"] == "network_dim")
    assert dim["values"]["a"]["value"] == 32 and dim["values"]["b"]["value"] == 64


def test_output_loras_are_the_runs_artifacts_and_epochs_are_not_runs(tmp_path):
    a = run_with_parts(tmp_path, "a", GOOD, dim=32)
    assert discover(a) == [a]
    run = load_run(a)
    assert run.name == "a"
    kinds = sorted(e.kind for e in run.evidence)
    assert kinds == ["config_toml", "safetensors"]  # one LoRA read; the per-epoch saves are not evidence
    names = {x.name: x.note for x in run.artifacts}
    assert set(names) == {"lora.safetensors", "lora-000001.safetensors", "lora-000002.safetensors"}
    assert names["lora-000002.safetensors"].startswith("epoch 2")
    # captions and sample prompts are no notes: the caption's "--network_dim 999" is not read
    assert run.params["network_dim"].value == 32


def test_only_epoch_saves_the_last_is_read(tmp_path):
    d = tmp_path / "r" / "output"
    d.mkdir(parents=True)
    write_lora(d / "x-000001.safetensors", network_dim=8)
    write_lora(d / "x-000004.safetensors", network_dim=16)
    run = load_run(tmp_path / "r")
    assert [e.path for e in run.evidence] == [str(d / "x-000004.safetensors")]


def test_audit_and_ablate_on_run_folders_with_subfolders(tmp_path, monkeypatch):
    a = run_with_parts(tmp_path / "runs", "good", GOOD, "good", dim=32)
    b = run_with_parts(tmp_path / "runs", "bad", BAD, "bad", dim=64)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["audit", "runs", "--json", "--out", str(tmp_path / "r.md")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["good"] == ["good"] and data["bad"] == ["bad"]
    # RUNS and --good/--bad read by the same rule: without a run.toml, the output/ LoRA was a run named 'output'
    (a / "run.toml").unlink()
    (b / "run.toml").unlink()
    r = CliRunner().invoke(main, ["ablate", str(a), str(b), "--good", "good", "--bad", "bad", "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    assert any("network_dim" in json.dumps(v) for v in plan["variants"])
    r = CliRunner().invoke(main, ["ablate", "--good", str(a), "--bad", str(b), "--dry-run"])
    assert r.exit_code == 0, r.output


def test_folder_of_runs_and_a_shared_config_folder(tmp_path):
    (tmp_path / "study" / "config").mkdir(parents=True)
    (tmp_path / "study" / "config" / "shared.toml").write_text(GOOD)
    run_with_parts(tmp_path / "study", "one", GOOD)
    run_with_parts(tmp_path / "study", "two", BAD)
    (tmp_path / "study" / "README.md").write_text("# my runs\nNothing to run here.\n")
    assert [r.name for r in load_runs([tmp_path / "study"])] == ["one", "two"]


def test_a_note_at_the_top_with_a_command_makes_the_folder_one_run(tmp_path):
    d = tmp_path / "r"
    (d / "scripts").mkdir(parents=True)
    (d / "notes.txt").write_text(textwrap.dedent("""\
        trained on the pod:
        accelerate launch train_network.py --network_dim 8 \\
           --learning_rate 2e-4
    """))
    (d / "scripts" / "t.toml").write_text("seed = 3\n")
    (runs := load_runs([d]))
    assert [r.name for r in runs] == ["r"]
    assert runs[0].params["network_dim"].value == 8
    assert runs[0].params["network_dim"].source == f"{d / 'notes.txt'}:2"
    assert runs[0].params["seed"].value == 3


def test_inspect_a_folder_of_runs_shows_each(tmp_path):
    run_with_parts(tmp_path, "a", GOOD)
    run_with_parts(tmp_path, "b", BAD)
    r = CliRunner().invoke(main, ["inspect", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    assert [x["name"] for x in json.loads(r.output)["runs"]] == ["a", "b"]


def test_the_same_run_name_under_two_arguments_is_told_apart(tmp_path):
    for side, cfg in (("a", GOOD), ("b", BAD)):
        (tmp_path / side / "kohya").mkdir(parents=True)
        (tmp_path / side / "kohya" / "config.toml").write_text(cfg)
    r = CliRunner().invoke(main, ["diff", str(tmp_path / "a"), str(tmp_path / "b"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["runs"] == ["a-kohya", "b-kohya"]


def test_a_variant_folder_is_one_invocation_not_the_runner_and_the_users_script(tmp_path):
    """ablate writes lora-audit-run.sh next to the user's edited script; inspecting the variant reads the user's
    script as the evidence, not both (which reported '2 training invocations' and conflicts)."""
    out = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "runs/examples/bespoke-punks", "--good", "SD15_PERFECT",
                                  "--bad", "SD15_bespoke_baby", "--out", str(out)])
    assert r.exit_code == 0, r.output
    variant = out / "ofat-network-dim"
    assert (variant / "lora-audit-run.sh").is_file()
    r = CliRunner().invoke(main, ["inspect", str(variant), "--json"])
    assert r.exit_code == 0, r.output
    assert "training invocations" not in r.output
    data = json.loads(r.output)
    run = data[0] if isinstance(data, list) else data
    text = json.dumps(run)
    assert "lora-audit-run.sh" not in text
    assert "runpod_train_sd15.sh" in text
