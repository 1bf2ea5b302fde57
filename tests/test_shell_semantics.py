"""Scripts read as their shell runs them: the values `lora-audit inspect --json` gives are the ones bash,
PowerShell or cmd would hand to kohya. Fixtures in tests/data/shell reproduce patterns of real training scripts."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.cli import main
from lora_audit.evidence.shell import parse_shell, parse_shell_text

DATA = Path(__file__).parent / "data" / "shell"


def inspect(path: Path) -> dict:
    result = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.output)["runs"]
    return run


def given(run: dict) -> dict:
    """What the evidence sets (explicit or only known at run time), not kohya's defaults."""
    return {k: p["value"] for k, p in run["params"].items() if p["origin"] in ("explicit", "unknown") and p["source"]
            and k != "training_script"}


def line(run: dict, name: str) -> int:
    return int(run["params"][name]["source"].rsplit(":", 1)[1])


def warnings(run: dict) -> str:
    return "\n".join(w["message"] for w in run["warnings"])


def test_bash_takes_the_branches_bash_takes():
    run = inspect(DATA / "branches.sh")
    assert run["script"] == "sdxl_train_network.py"  # $trainer_file from the elif model_type == "sdxl"
    assert given(run) == {
        "pretrained_model_name_or_path": "./models/base.safetensors", "optimizer_type": "DAdaptation",
        "learning_rate": 1.0,  # case "$optimizer_type" in DAdapt*|Prodigy)
        "network_dim": 32,
        "lowram": True,  # [[ $lowram ]] with lowram=0: a non-empty string, so bash adds --lowram
        "max_token_length": 225,  # the else of [[ $is_v2_model == 1 ]]
        "optimizer_args": ["decouple=True"], "min_snr_gamma": 5.0}
    # nothing from an untaken branch: no --clip_skip (sd1.5), --v2, --network_args, --noise_offset
    assert line(run, "lowram") == 28 and line(run, "learning_rate") == 47
    assert "given twice" not in warnings(run) and "argparse would refuse" not in warnings(run)


def test_undecidable_condition_gives_candidates_never_an_explicit_value():
    run = inspect(DATA / "conditional.sh")
    dim, v2 = run["params"]["network_dim"], run["params"]["v2"]
    assert dim["origin"] == "unknown" and dim["value"] is None
    assert [(a["value"], "is true" in a["note"]) for a in dim["alternatives"]] == [(64, True), (32, False)]
    assert "[ -f /workspace/big_gpu ]" in dim["alternatives"][0]["note"]
    assert v2["origin"] == "unknown" and [a["value"] for a in v2["alternatives"]] == [True, False]
    assert "kohya's default" in v2["alternatives"][1]["note"]
    # what every branch agrees on stays explicit
    assert run["params"]["train_batch_size"] == {"value": 8, "origin": "explicit",
                                                 "source": str(DATA / "conditional.sh") + ":14", "note": None}
    assert run["params"]["seed"]["origin"] == "explicit"


def test_runtime_values_are_kept_whole_and_never_defaults():
    run = inspect(DATA / "runtime.sh")
    p = run["params"]
    assert p["output_name"]["origin"] == "unknown" and p["output_name"]["value"] == '$1_$(date "+%Y%m%d-%H%M%S")'
    assert p["output_dir"]["origin"] == "unknown" and p["output_dir"]["value"] == "$OUTPUT_DIR"
    assert p["logging_dir"]["value"] == "`pwd`/logs" and p["logging_dir"]["origin"] == "unknown"
    # an environment variable the script does not set is not kohya's default (1)
    assert p["train_batch_size"]["origin"] == "unknown" and p["train_batch_size"]["value"] == "${BATCH_SIZE}"
    assert p["network_dim"] == {"value": 16, "origin": "explicit", "source": str(DATA / "runtime.sh") + ":9",
                                "note": None}
    text = warnings(run)
    assert "stray argument" not in text and "expects int" not in text
    assert "$OUTPUT_DIR is not set in the script" in text


def test_a_comment_inside_a_continuation_ends_the_command_and_names_the_orphans():
    run = inspect(DATA / "comment_in_continuation.sh")
    assert given(run) == {"network_dim": 32}  # bash never passes --learning_rate and --seed to kohya
    (w,) = [w for w in run["warnings"] if "commented-out line" in w["message"]]
    assert w["source"].endswith("comment_in_continuation.sh:3") and "lines 4-5 are not part of the command" in \
        w["message"]


def test_legal_bash_is_never_refused():
    run = inspect(DATA / "legal.sh")  # empty "${ARGS[@]}" and a trailing backslash at the end of the file
    assert given(run) == {"network_dim": 8, "seed": 1}
    assert run["warnings"] == []


def test_heredoc_written_configs_are_read_with_the_script_lines():
    run = inspect(DATA / "heredoc.sh")
    p = run["params"]
    assert run["script"] == "sdxl_train_network.py"
    assert p["network_dim"]["value"] == 16 and line(run, "network_dim") == 23  # network_dim = ${DIM} in the body
    assert p["learning_rate"]["value"] == 1e-4 and p["network_alpha"]["value"] == 8
    assert p["seed"]["value"] == 1203 and line(run, "seed") == 31
    assert p["caption_extension"]["value"] == ".txt" and line(run, "caption_extension") == 11  # the dataset heredoc
    assert p["network_dim"]["source"].startswith(str(DATA / "heredoc.sh"))
    assert "not found" not in warnings(run)
    # the <<-'EOF2' body (tabs stripped, never expanded) is written too, but no command reads it
    assert p["optimizer_type"]["origin"] == "default"


def test_heredoc_with_a_runtime_value_is_unknown_not_an_error(tmp_path):
    p = tmp_path / "t.sh"
    p.write_text('cat > c.toml <<EOF\nnetwork_dim = $(cat dim.txt)\nEOF\naccelerate launch train_network.py '
                 "--config_file c.toml --seed 3\n")
    (ev,) = parse_shell(p)
    assert {s.name: s.value for s in ev.settings} == {"config_file": "c.toml", "seed": 3}
    assert not ev.complete or any("cannot be read before the script runs" in w.message for w in ev.warnings)


def test_sourced_file_in_the_run_folder_is_read(tmp_path):
    shutil.copytree(DATA / "sourced", tmp_path / "run")
    run = inspect(tmp_path / "run" / "train.sh")
    assert given(run)["network_dim"] == 24 and given(run)["learning_rate"] == 2e-4
    assert run["params"]["output_name"]["origin"] == "unknown"  # $NAME: neither file sets it
    assert "missing.env, which could not be read" in warnings(run)


def test_for_loop_runs_once_per_value():
    evs = parse_shell(DATA / "loop.sh")
    assert [({s.name: s.value for s in e.settings}) for e in evs] == [
        {"network_dim": 8, "output_name": "dim8"}, {"network_dim": 16, "output_name": "dim16"}]


def test_powershell_arraylist_branches_splatting_and_quotes():
    run = inspect(DATA / "branches.ps1")
    assert run["script"] == "train_network.py"
    assert given(run) == {
        "network_dim": 32, "output_name": "punks",
        "training_comment": "$name stays",  # single quotes: literal
        "optimizer_type": "AdamW8bit", "seed": 1337,  # @args2 splatted
        "clip_skip": 2,  # if ($model_type -eq "sd1.5") { [void]$ext_args.Add("--clip_skip=$clip_skip") }
        "keep_tokens": 1,  # if ($keep): the string "0" is true
        "optimizer_args": ["weight_decay=0.01"],  # .AddRange(@(...)) when -like "AdamW*"
    }  # no --lowram ($lowram = 0 is false), no --noise_offset (0 -ne 0 is false), no --v2 (else not taken)
    assert line(run, "clip_skip") == 16 and line(run, "seed") == 37


def test_powershell_undecidable_branch_makes_the_list_unknown(tmp_path):
    p = tmp_path / "t.ps1"
    p.write_text('$a = [System.Collections.ArrayList]@()\nif (Test-Path "big.txt") { [void]$a.Add("--v2") }\n'
                 "python train_network.py --network_dim 8 $a\n")
    (ev,) = parse_shell(p)
    assert {s.name: s.value for s in ev.settings} == {"network_dim": 8}  # never --v2 as if it were certain
    assert any("only known at run time" in w.message for w in ev.warnings)


def test_cmd_set_a_dp0_call_and_caret_continuation():
    run = inspect(DATA / "cmd_forms.bat")
    assert given(run) == {"network_dim": 16, "max_train_epochs": 20, "output_dir": ".\\output"}
    assert line(run, "max_train_epochs") == 7 and run["warnings"] == []


def test_shell_text_inside_another_file_keeps_its_lines(tmp_path):
    (ev,) = parse_shell_text('DIM=8\naccelerate launch train_network.py --network_dim $DIM\n', tmp_path / "nb.ipynb",
                             label="nb.ipynb", first_line=40)
    assert ev.settings[0].value == 8 and ev.settings[0].source == "nb.ipynb:41"
    assert ev.facts["variables"][0]["defined"] == "nb.ipynb:40"


@pytest.mark.slow
def test_a_2mb_script_is_read(tmp_path):
    p = tmp_path / "big.sh"
    body = "".join(f'V{i % 50}="--seed {i}"\nARGS+=(--network_dim {i % 64 + 1})\n' for i in range(40_000))
    p.write_text("ARGS=()\n" + body + 'accelerate launch train_network.py "${ARGS[@]}"\n')
    assert p.stat().st_size > 1_500_000
    (ev,) = parse_shell(p)
    assert {s.name: s.value for s in ev.settings}["network_dim"] == 39_999 % 64 + 1  # argparse keeps the last


def test_quoted_heredoc_is_literal_and_dash_heredoc_strips_tabs(tmp_path):
    p = tmp_path / "t.sh"
    p.write_text("NAME=real\nDIM=8\ncat > a.toml <<'EOF'\noutput_name = \"$NAME\"\nEOF\n"
                 "\tcat <<-EOF > b.toml\n\tnetwork_dim = $DIM\n\tEOF\n"
                 "accelerate launch train_network.py --config_file a.toml\n"
                 "accelerate launch train_network.py --config_file b.toml\n")
    a, b = parse_shell(p)
    assert {s.name: s.value for s in a.settings}["output_name"] == "$NAME"  # <<'EOF': no expansion
    assert {s.name: s.value for s in b.settings}["network_dim"] == 8  # <<-EOF: tabs stripped, $DIM expanded
    assert [s.source for s in b.settings if s.name == "network_dim"] == [f"{p}:7"]


def test_ps1_add_to_a_list_never_created_is_noted_on_its_own_line(tmp_path: Path) -> None:
    """`$a.Add(...)` without `$a = ...` before it: the warning names the line of the .Add(), not another."""
    script = tmp_path / "t.ps1"
    script.write_text('# a\n# b\n\n\n[void]$a.Add("--seed=1")\npython train_network.py $a --network_dim 8\n')
    (ev,) = parse_shell(script)
    notes = [w for w in ev.warnings if "is not created in the script before .Add()" in w.message]
    assert [n.source.rsplit("/", 1)[-1] for n in notes] == ["t.ps1:5"]
