"""Training scripts (bash, .bat/.cmd, .ps1) → Evidence: typed kohya values, each with the line its flag is on."""

import textwrap
from pathlib import Path

import pytest

from lora_audit.errors import EvidenceError
from lora_audit.evidence import load_run
from lora_audit.evidence.shell import parse_shell


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line containing needle (what a user would look up in the script)."""
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def settings(ev):
    return {s.name: s.value for s in ev.settings}


def line(ev, name: str) -> int:
    (s,) = [s for s in ev.settings if s.name == name]
    return int(s.source.rsplit(":", 1)[1])


def messages(ev) -> str:
    return "\n".join(w.message for w in ev.warnings)


# The good SD1.5 run of the seed document (training-parameters-comparison.md), every parameter of its tables,
# typed as kohya's argparse types them.
SD15 = {
    "pretrained_model_name_or_path": "runwayml/stable-diffusion-v1-5",
    "network_module": "networks.lora",
    "network_dim": 32,
    "network_alpha": 16.0,
    "resolution": "512,512",
    "train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-4,
    "unet_lr": 1e-4,
    "text_encoder_lr": [5e-5],  # nargs="*" at the pinned sd-scripts commit
    "optimizer_type": "AdamW8bit",
    "lr_scheduler": "cosine_with_restarts",
    "lr_scheduler_num_cycles": 3,
    "min_snr_gamma": 5.0,
    "mixed_precision": "fp16",
    "save_precision": "fp16",
    "gradient_checkpointing": True,
    "cache_latents": True,
    "cache_latents_to_disk": True,
    "xformers": True,
    "noise_offset": 0.1,
    "multires_noise_iterations": 6,
    "multires_noise_discount": 0.3,
    "adaptive_noise_scale": 0.00357,
    "caption_extension": ".txt",
    "shuffle_caption": True,
    "keep_tokens": 2,
    "max_token_length": 225,
    "bucket_reso_steps": 64,
    "bucket_no_upscale": True,
    "max_data_loader_n_workers": 1,
    "max_train_epochs": 10,
    "save_every_n_epochs": 1,
    "seed": 42,
}

SD15_BASH = r"""
#!/bin/bash
# SD1.5 LoRA training on RunPod: bespoke punks, pixel art 24x24
set -e

MODEL="runwayml/stable-diffusion-v1-5"
export DATA_DIR='/workspace/bespoke_punks/civitai_v2_7_training'
DIM=32   # 64 gave photorealistic babies
NAME=bespoke_punks_SD15_PERFECT

cd /workspace/sd-scripts && echo "training $NAME"

accelerate launch --num_cpu_threads_per_process=2 train_network.py \
  --pretrained_model_name_or_path="$MODEL" \
  --train_data_dir="${DATA_DIR}" \
  --output_dir="/workspace/output" --output_name=$NAME \
  --save_model_as=safetensors \
  --network_module=networks.lora \
  --network_dim=$DIM \
  --network_alpha 16 \
  --resolution="512,512" \
  --train_batch_size=4 \
  --gradient_accumulation_steps=1 \
  --learning_rate=0.0001 \
  --unet_lr=1e-4 \
  --text_encoder_lr=0.00005 \
  --optimizer_type="AdamW8bit" \
  --lr_scheduler='cosine_with_restarts' \
  --lr_scheduler_num_cycles=3 \
  --min_snr_gamma=5 \
  --mixed_precision="fp16" \
  --save_precision="fp16" \
  --gradient_checkpointing \
  --cache_latents \
  --cache_latents_to_disk \
  --xformers \
  --noise_offset=0.1 \
  --multires_noise_iterations=6 \
  --multires_noise_discount=0.3 \
  --adaptive_noise_scale=0.00357 \
  --caption_extension=".txt" \
  --shuffle_caption \
  --keep_tokens=2 \
  --max_token_length=225 \
  --bucket_reso_steps=64 \
  --bucket_no_upscale \
  --max_data_loader_n_workers=1 \
  --max_train_epochs=10 \
  --save_every_n_epochs=1 \
  --seed=42  # fixed seed for the comparisons
echo "done"
"""


def test_sd15_good_run_bash_script(tmp_path):
    p = write(tmp_path, "runpod_train_sd15.sh", SD15_BASH)
    (ev,) = parse_shell(p)
    assert ev.kind == "shell" and ev.script == "train_network.py" and ev.complete
    got = settings(ev)
    for name, value in SD15.items():
        assert got[name] == value, name
        assert type(got[name]) is type(value), name
    assert got["output_name"] == "bespoke_punks_SD15_PERFECT"
    assert got["train_data_dir"] == "/workspace/bespoke_punks/civitai_v2_7_training"
    # every source is the line the flag is written on, continuations counted
    for s in ev.settings:
        assert f"--{s.name}" in p.read_text().splitlines()[line(ev, s.name) - 1], s.name
    assert line(ev, "pretrained_model_name_or_path") == 13
    assert line(ev, "output_name") == line(ev, "output_dir") == 15
    assert line(ev, "seed") == 49
    assert ev.facts["accelerate"] == {"num_cpu_threads_per_process": "2"}
    assert {v["name"]: v["defined"].rsplit(":", 1)[1] for v in ev.facts["variables"]} == {
        "MODEL": "5", "DATA_DIR": "6", "DIM": "7", "NAME": "8"}
    assert ev.warnings == []


def _bat(params: dict) -> str:
    lines = ["@echo off", "REM SD1.5 LoRA, the good run", ":: variables", 'set "MODEL=runwayml/stable-diffusion-v1-5"',
             "set DIM=32", "call venv\\Scripts\\activate.bat",
             'accelerate launch --num_cpu_threads_per_process=2 "%~dp0train_network.py" ^']
    for name, value in params.items():
        if value is True:
            lines.append(f"  --{name} ^")
        elif name == "pretrained_model_name_or_path":
            lines.append(f'  --{name}="%MODEL%" ^')
        elif name == "network_dim":
            lines.append(f"  --{name} %DIM% ^")
        else:
            lines.append(f'  --{name} "{value[0] if isinstance(value, list) else value}" ^')
    lines[-1] = lines[-1][:-2]
    return "\r\n".join(lines) + "\r\npause\r\n"


def _ps1(params: dict) -> str:
    lines = ["# SD1.5 LoRA, the good run", '$env:MODEL = "runwayml/stable-diffusion-v1-5"', "$Dim = 32",
             "<# the launch #>", "& accelerate launch --num_cpu_threads_per_process=2 train_network.py `"]
    for name, value in params.items():
        if value is True:
            lines.append(f"  --{name} `")
        elif name == "pretrained_model_name_or_path":
            lines.append(f'  --{name}="$env:MODEL" `')
        elif name == "network_dim":
            lines.append(f"  --{name} $Dim `")
        else:
            lines.append(f"  --{name} '{value[0] if isinstance(value, list) else value}' `")
    lines[-1] = lines[-1][:-2]
    return "\n".join(lines) + '\nWrite-Host "done"\n'


@pytest.mark.parametrize("name,render,kind", [("train.bat", _bat, "bat"), ("train.cmd", _bat, "bat"),
                                              ("train.ps1", _ps1, "ps1")])
def test_sd15_good_run_windows_scripts(tmp_path, name, render, kind):
    p = tmp_path / name
    p.write_bytes(render(SD15).encode())
    (ev,) = parse_shell(p)
    assert ev.kind == kind and ev.script == "train_network.py"
    assert {k: v for k, v in settings(ev).items()} == SD15
    for s in ev.settings:
        assert line(ev, s.name) == line_of(p, f"--{s.name} ") if f"--{s.name} " in p.read_text() else \
            line(ev, s.name) == line_of(p, f"--{s.name}=")
    assert ev.warnings == []


# -- bash ------------------------------------------------------------------------------------------------------------

def test_bash_quotes_escapes_nargs_and_variable_forms(tmp_path):
    p = write(tmp_path, "t.sh", r"""
        OUT=/data/out
        OPT_ARGS=(
          "weight_decay=0.01"   # decoupled
          'betas=0.9,0.99'
        )
        EXTRA="--max_train_epochs 10 --save_every_n_epochs 2"
        python3 -u ./sd-scripts/train_network.py --output_dir "$OUT/run 1" \
          --output_name 'it'\''s "quoted"' --optimizer_args "${OPT_ARGS[@]}" \
          --network_args "conv_dim=4" conv_alpha=1 $EXTRA \
          --seed ${SEED:-1234} --sample_prompts=${PROMPTS} --logging_dir "$(date +%F)"
    """)
    (ev,) = parse_shell(p)
    got = settings(ev)
    assert got["output_dir"] == "/data/out/run 1"
    assert got["output_name"] == """it's "quoted\""""
    assert got["optimizer_args"] == ["weight_decay=0.01", "betas=0.9,0.99"]
    assert got["network_args"] == ["conv_dim=4", "conv_alpha=1"]
    assert got["max_train_epochs"] == 10 and got["save_every_n_epochs"] == 2
    assert line(ev, "max_train_epochs") == 6  # the flag is written in EXTRA's assignment
    assert line(ev, "optimizer_args") == 8
    assert got["seed"] == 1234
    assert got["sample_prompts"] == "${PROMPTS}" and got["logging_dir"] == "$(date +%F)"
    text = messages(ev)
    assert "$SEED is not set in the script" in text and "'1234'" in text
    assert "${PROMPTS} is not set in the script" in text
    assert "$(date +%F) is a command the script runs" in text
    assert {x.name: x.origin for x in ev.settings}["logging_dir"] == "unknown"  # a runtime value, never explicit
    assert {w.source for w in ev.warnings} == {f"{p}:10"}


def test_bash_separators_redirections_heredocs_and_helper_scripts(tmp_path):
    p = write(tmp_path, "two.sh", r"""
        source venv/bin/activate; cd sd-scripts && python tag_images_by_wd14_tagger.py img --batch_size 8
        cat > notes.txt <<'EOF'
        accelerate launch train_network.py --network_dim 99 "unbalanced
        EOF
        accelerate launch train_network.py --network_dim 16 > log.txt 2>&1 && echo ok
        CUDA_VISIBLE_DEVICES=1 nohup python sdxl_train_network.py --network_dim=64 | tee sdxl.log &
        python networks/resize_lora.py --new_rank 8
    """)
    evs = parse_shell(p)
    assert [(e.script, settings(e)["network_dim"], line(e, "network_dim")) for e in evs] == [
        ("train_network.py", 16, 5), ("sdxl_train_network.py", 64, 6)]


def test_bash_script_folder_and_config_file_relative_to_the_script(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "base.toml").write_text('network_dim = 8\nlearning_rate = 2e-4\n')
    p = write(tmp_path, "run.sh", r"""
        HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
        accelerate launch train_network.py --config_file "$HERE/cfg/base.toml" --network_dim 32
    """)
    (ev,) = parse_shell(p)
    got = settings(ev)
    assert got["network_dim"] == 32 and got["learning_rate"] == 2e-4  # command line over config file
    assert any(s.source.endswith("base.toml:2") for s in ev.settings if s.name == "learning_rate")
    assert ev.warnings == []


def test_bash_unknown_flag_is_warned_with_the_nearest_name(tmp_path):
    p = write(tmp_path, "t.sh", "accelerate launch train_network.py \\\n  --network_dims 32 --shuffle_captions\n")
    (ev,) = parse_shell(p)
    text = messages(ev)
    assert "--network_dims" in text and "--network_dim?" in text and "--shuffle_caption?" in text
    assert all(w.source == f"{p}:2" for w in ev.warnings)


def test_bash_backslash_space_and_commented_line_end_the_command(tmp_path):
    p = write(tmp_path, "t.sh", "accelerate launch train_network.py \\\n  --network_dim 32 \\ \n  --seed 1\n"
                                "python train_network.py --network_dim 8 \\\n#  --network_alpha 4 \\\n  --seed 2\n")
    first, second = parse_shell(p)
    assert "seed" not in settings(first) and "seed" not in settings(second)
    assert "backslash followed by a space" in messages(first)
    assert "commented-out line inside a \\-continued command ends it" in messages(second)


@pytest.mark.parametrize("text,where", [
    ('echo hi\naccelerate launch train_network.py --output_name "oops\n--seed 1\n', 2),
    ("accelerate launch train_network.py \\\n  --output_name 'oops\n", 2),
    ("X=$(date\n", 1),
])
def test_unterminated_quote_is_an_error_with_its_line(tmp_path, text, where):
    p = write(tmp_path, "t.sh", text)
    with pytest.raises(EvidenceError) as e:
        parse_shell(p)
    assert e.value.path == str(p) and e.value.line == where and "unterminated" in e.value.message


def test_a_script_without_a_training_command_gives_nothing(tmp_path):
    assert parse_shell(write(tmp_path, "setup.sh", "pip install -r requirements.txt\necho 'accelerate launch'\n")) == []


def test_missing_script_is_an_error(tmp_path):
    with pytest.raises(EvidenceError, match="no such file"):
        parse_shell(tmp_path / "nope.sh")


# -- Windows batch ---------------------------------------------------------------------------------------------------

def test_batch_set_forms_percent_variables_and_comments(tmp_path):
    p = tmp_path / "t.bat"
    p.write_bytes("\r\n".join([
        "@echo off",
        "setlocal",
        "rem --network_dim 1",
        'set "OUT=C:\\out dir"',
        "set LR=1e-4",
        "set /a EPOCHS=5*2",
        "set TAG = x",
        "python.exe sd-scripts\\sdxl_train_network.py --output_dir=\"%OUT%\" --learning_rate %LR% ^",
        "  --max_train_epochs %EPOCHS% --output_name %TAG% --logging_dir %1 ^",
        "  --caption_extension .txt --seed 7 > log.txt 2>&1 & echo 100%% done",
    ]).encode())
    (ev,) = parse_shell(p)
    got = settings(ev)
    assert ev.script == "sdxl_train_network.py"
    assert got["output_dir"] == "C:\\out dir" and got["learning_rate"] == 1e-4 and got["max_train_epochs"] == 10
    assert got["caption_extension"] == ".txt" and got["seed"] == 7
    assert line(ev, "max_train_epochs") == 9 and line(ev, "seed") == 10
    text = messages(ev)
    assert "%TAG% is not set in the script" in text and "'TAG '" in text  # set TAG = x names "TAG "
    assert "%1 is an argument given to the script" in text


def test_batch_rem_inside_a_continued_command_is_an_argument(tmp_path):
    p = tmp_path / "t.cmd"
    p.write_text("accelerate launch train_network.py ^\n  --network_dim 32 ^\nREM  --network_alpha 16 ^\n  --seed 1\n")
    (ev,) = parse_shell(p)
    assert "REM inside a ^-continued command is not a comment" in messages(ev)
    assert any(w.source == f"{p}:3" for w in ev.warnings)


def test_batch_unterminated_quote(tmp_path):
    p = tmp_path / "t.bat"
    p.write_text('set X=1\naccelerate launch train_network.py ^\n  --output_dir "C:\\out ^\n  --seed 1\n')
    with pytest.raises(EvidenceError) as e:
        parse_shell(p)
    assert e.value.line == 3


# -- PowerShell ------------------------------------------------------------------------------------------------------

def test_powershell_variables_arrays_strings_and_call_operator(tmp_path):
    p = write(tmp_path, "t.ps1", """
        param([int]$Epochs = 10)
        $env:OUT = "D:\\runs"
        $Name = 'punks_$x'
        $OptArgs = @(
            "weight_decay=0.01"   # decoupled
            "betas=0.9,0.99"
        )
        $Py = ".\\venv\\Scripts\\python.exe"
        & $Py sd-scripts\\train_network.py --output_dir "$env:OUT\\$Name" `
          --optimizer_args $OptArgs --network_args @("conv_dim=4", "conv_alpha=1") `
          --max_train_epochs $Epochs --output_name 'a `b' --sample_prompts="$env:PROMPTS" `
          --learning_rate 1e-4  # tuned
        Write-Host "done"
    """)
    (ev,) = parse_shell(p)
    got = settings(ev)
    assert got["output_dir"] == "D:\\runs\\punks_$x"
    assert got["optimizer_args"] == ["weight_decay=0.01", "betas=0.9,0.99"]
    assert got["network_args"] == ["conv_dim=4", "conv_alpha=1"]
    assert got["max_train_epochs"] == 10 and got["learning_rate"] == 1e-4
    assert got["output_name"] == "a `b"  # single quotes are literal
    assert got["sample_prompts"] == "$env:PROMPTS"
    assert line(ev, "learning_rate") == 12 and line(ev, "network_args") == 10
    text = messages(ev)
    assert "$env:PROMPTS is not set in the script" in text and "$Epochs is a parameter of the script" in text


def test_powershell_unterminated_string(tmp_path):
    p = write(tmp_path, "t.ps1", 'python train_network.py `\n  --output_name "oops\n')
    with pytest.raises(EvidenceError) as e:
        parse_shell(p)
    assert e.value.line == 2


def test_powershell_utf16_file_from_windows(tmp_path):
    p = tmp_path / "t.ps1"
    p.write_bytes("\ufeffpython train_network.py --network_dim 8\r\n".encode("utf-16-le"))
    (ev,) = parse_shell(p)
    assert settings(ev)["network_dim"] == 8


# -- through load_run ------------------------------------------------------------------------------------------------

def test_a_run_folder_with_the_script_gets_explicit_values_and_kohya_defaults(tmp_path):
    d = tmp_path / "sd15_perfect"
    d.mkdir()
    write(d, "runpod_train_sd15.sh", SD15_BASH)
    run = load_run(d)
    assert run.script == "train_network.py"
    assert run.params["network_dim"].value == 32 and run.params["network_dim"].origin == "explicit"
    assert run.params["network_dim"].source.endswith("runpod_train_sd15.sh:18")
    assert run.params["prior_loss_weight"].origin == "default"


def test_bash_assignment_forms_and_compound_commands(tmp_path):
    p = write(tmp_path, "t.sh", r"""
        : "${DIM:=16}"
        declare -x ALPHA=8
        ARGS=(--seed 1)
        ARGS+=(--max_train_epochs 3)
        NAME=run; NAME+=_b
        GONE=x; unset GONE
        EPOCHS=$((2 * 3))
        train() {
          if [ -d img ]; then ./sdxl_train_network.py --network_dim "$DIM" --network_alpha=$ALPHA "${ARGS[@]}" \
            --output_name $'a\tb' --output_dir ${NAME} --save_every_n_epochs $EPOCHS --logging_dir "$GONE"; fi
        }
        X=1 accelerate launch train_network.py --training_comment "$X"
    """)
    # bash runs the top level first; the function is never called, so its command comes last, marked as such
    second, first = parse_shell(p)
    assert "function train is never called" in messages(first)
    got = settings(first)
    assert first.script == "sdxl_train_network.py" and first.facts["launcher"] == "direct"
    assert got["network_dim"] == 16 and got["network_alpha"] == 8.0 and got["seed"] == 1
    assert got["max_train_epochs"] == 3 and got["output_name"] == "a\tb" and got["output_dir"] == "run_b"
    assert got["save_every_n_epochs"] == 6 and got["logging_dir"] == "$GONE"
    # bash expands $X before the command's own X=1 applies
    assert settings(second)["training_comment"] == "$X" and "$X is not set" in messages(second)


def test_batch_delayed_expansion(tmp_path):
    p = tmp_path / "t.bat"
    p.write_text("setlocal EnableDelayedExpansion\nset D=4\npython train_network.py --network_dim !D! --seed 5\n")
    (ev,) = parse_shell(p)
    assert settings(ev) == {"network_dim": 4, "seed": 5}


def test_powershell_commented_out_line_and_stop_parsing(tmp_path):
    p = write(tmp_path, "t.ps1", """
        python train_network.py `
          --network_dim 8 `
        # --network_alpha 4 `
          --seed 1
        python train_network.py --% --network_dim 16 --output_name "%NAME%"
    """)
    first, second = parse_shell(p)
    assert settings(first) == {"network_dim": 8}
    assert "commented-out line inside a `-continued command ends it" in messages(first)
    assert any(w.source == f"{p}:3" for w in first.warnings)
    assert settings(second)["network_dim"] == 16


@pytest.mark.parametrize("name,text,message", [
    ("t.bat", "python train_network.py ^\n  --network_dim 8 ^  \n  --seed 1\n", "a ^ followed by spaces"),
    ("t.ps1", "python train_network.py `\n  --network_dim 8 ` \n  --seed 1\n", "backtick followed by a space"),
])
def test_windows_continuation_followed_by_a_space_ends_the_command(tmp_path, name, text, message):
    p = tmp_path / name
    p.write_text(text)
    (ev,) = parse_shell(p)
    assert settings(ev)["network_dim"] == 8 and "seed" not in settings(ev)
    assert any(message in w.message and w.source == f"{p}:2" for w in ev.warnings)


def test_batch_unbalanced_quote_outside_the_training_command_is_harmless(tmp_path):
    p = tmp_path / "t.bat"
    p.write_text('echo "starting the run\npython train_network.py --network_dim 8\n')
    (ev,) = parse_shell(p)
    assert settings(ev) == {"network_dim": 8}
