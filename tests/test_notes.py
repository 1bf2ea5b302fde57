"""Markdown notes → the training commands pasted in their code blocks, sources as lines of the .md file."""

import textwrap
from pathlib import Path

import pytest

from lora_audit.errors import EvidenceError
from lora_audit.evidence import load_run
from lora_audit.evidence.notes import fenced_blocks, parse_notes


def write(tmp_path: Path, text: str, name: str = "TRAINING_PROGRESS.md") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if needle in ln)


def settings(ev):
    return {s.name: s.value for s in ev.settings}


def source_line(ev, name):
    (s,) = [s for s in ev.settings if s.name == name]
    return int(s.source.rsplit(":", 1)[1])


SDXL_NOTE = """
# Training progress: bespoke baby SDXL

## Nov 10, 11:00 AM: SDXL run started

Same captions (civitai_v2_7_training, 203 images). Set-up first:

```python
print("not a shell block: accelerate launch train_network.py --network_dim 1")
```

```bash
$ export MODEL=stabilityai/stable-diffusion-xl-base-1.0
```

Command as launched on the pod:

```bash
accelerate launch --num_cpu_threads_per_process=2 sdxl_train_network.py \\
  --pretrained_model_name_or_path="$MODEL" \\
  --network_dim=128 --network_alpha=64 \\
  --resolution="1024,1024" \\
  --train_batch_size=2 \\
  --mixed_precision="bf16" \\
  --noise_offset=0.1 \\
  --caption_extension=".txt" \\
  --max_train_epochs=10 --seed=42
```

## Result

```
Epoch 10: wrong colors, don't use it
```
"""


def test_sdxl_progress_note(tmp_path):
    p = write(tmp_path, SDXL_NOTE)
    (ev,) = parse_notes(p)
    assert ev.kind == "notes" and ev.script == "sdxl_train_network.py" and ev.complete
    got = settings(ev)
    assert got["pretrained_model_name_or_path"] == "stabilityai/stable-diffusion-xl-base-1.0"  # from the earlier block
    assert got["network_dim"] == 128 and got["network_alpha"] == 64.0 and got["train_batch_size"] == 2
    assert got["resolution"] == "1024,1024" and got["mixed_precision"] == "bf16" and got["seed"] == 42
    for s in ev.settings:  # lines of the .md file
        assert f"--{s.name}" in p.read_text().splitlines()[source_line(ev, s.name) - 1]
    assert source_line(ev, "network_dim") == line_of(p, "--network_dim=128")
    assert ev.warnings == []


def test_each_shell_dialect_in_its_block(tmp_path):
    p = write(tmp_path, """
        # three attempts

        ```powershell
        PS C:\\sd-scripts> $env:DIM = "16"
        PS C:\\sd-scripts> & python train_network.py `
        >>   --network_dim $env:DIM
        ```

        1. On the Windows box:

           ~~~bat
           set ALPHA=8
           accelerate launch train_network.py ^
             --network_alpha %ALPHA%
           ~~~

        ```console
        (venv) user@pod:~/sd-scripts$ python3 train_network.py --network_dim 64 \\
            --seed 3
        steps: 100%|██████| 2030/2030 [1:02:03<00:00, "loss=0.1]
        $ echo done
        ```
    """)
    ps, bat, console = parse_notes(p)
    assert (ps.kind, bat.kind, console.kind) == ("notes", "notes", "notes")
    assert settings(ps)["network_dim"] == 16
    assert settings(bat)["network_alpha"] == 8.0 and source_line(bat, "network_alpha") == line_of(p, "--network_alpha")
    assert settings(console) == {"network_dim": 64, "seed": 3}
    assert source_line(console, "seed") == line_of(p, "--seed 3")


def test_untagged_blocks_are_read_by_their_continuations(tmp_path):
    p = write(tmp_path, """
        ```
        accelerate launch train_network.py ^
          --network_dim 4
        ```
        ```
        python train_network.py `
          --network_dim 5
        ```
        ```
        python train_network.py \\
          --network_dim 6
        ```
    """)
    assert [settings(e)["network_dim"] for e in parse_notes(p)] == [4, 5, 6]


def test_a_note_without_commands_gives_nothing(tmp_path):
    p = write(tmp_path, """
        # Ideas
        Try `--network_dim 16` next time; don't forget "shuffle_caption.

        ```toml
        network_dim = 16
        ```
        ```
        it's a log line with an "unbalanced quote
        ```
    """)
    assert parse_notes(p) == []


def test_unterminated_quote_in_a_training_block_is_an_error_at_its_md_line(tmp_path):
    p = write(tmp_path, """
        # run

        ```sh
        accelerate launch train_network.py --output_name "oops
        ```
    """)
    with pytest.raises(EvidenceError) as e:
        parse_notes(p)
    assert e.value.line == 4 and e.value.path == str(p)


def test_fenced_blocks_keep_md_lines_and_languages():
    text = "intro\n```bash title=\"x\"\na\nb\n```\n    ~~~~ps1\n    c\n    ~~~~\n```\nunclosed\n"
    blocks = fenced_blocks(text)
    assert [(b.lang, b.first_line, b.lines) for b in blocks] == [
        ("bash", 3, ["a", "b"]), ("ps1", 7, ["c"]), ("", 10, ["unclosed", ""])]


def test_a_run_folder_with_a_note_and_a_config_next_to_it(tmp_path):
    d = tmp_path / "sdxl_current"
    d.mkdir()
    (d / "base.toml").write_text("learning_rate = 1e-4\n")
    write(d, """
        ```bash
        accelerate launch sdxl_train_network.py --config_file base.toml --network_dim 128
        ```
    """)
    run = load_run(d)
    assert run.script == "sdxl_train_network.py"
    assert run.params["learning_rate"].value == 1e-4 and run.params["learning_rate"].source.endswith("base.toml:1")
    assert run.params["network_dim"].source.endswith("TRAINING_PROGRESS.md:2")


# --- python fences, unfenced commands, .txt notes, metadata blocks, one run per command --------------------------

def test_python_fence_with_bang_lines_and_environment(tmp_path):
    # the shape of a Colab cell pasted into a README: os.environ paths and a `!accelerate launch`
    p = write(tmp_path, """
        ## Run on Colab

        ```python
        import os
        os.environ['KOHYA_DIR'] = "/content/kohya_ss"
        os.environ['OUTPUT_DIR'] = "/content/drive/MyDrive/out"
        !mkdir -p "$OUTPUT_DIR"
        !accelerate launch --num_cpu_threads_per_process=2 \\
            "$KOHYA_DIR/sd-scripts/train_network.py" \\
            --pretrained_model_name_or_path="runwayml/stable-diffusion-v1-5" \\
            --output_dir="$OUTPUT_DIR" \\
            --network_dim=16 --learning_rate=1e-4
        ```
    """, name="README.md")
    (ev,) = parse_notes(p)
    assert ev.script == "train_network.py"
    got = settings(ev)
    assert got["output_dir"] == "/content/drive/MyDrive/out" and got["network_dim"] == 16
    assert source_line(ev, "network_dim") == line_of(p, "--network_dim=16")


def test_unfenced_commands_in_markdown_and_txt(tmp_path):
    md = write(tmp_path, """
        # what I ran

        First try, straight from the terminal:
        accelerate launch train_network.py --network_dim 8 \\
          --network_alpha 4

        - `python train_network.py --network_dim 16 --seed 5`

        Then I said: use train_network.py with a higher dim (prose, not a command).
    """)
    first, second = parse_notes(md)
    assert settings(first) == {"network_dim": 8, "network_alpha": 4.0}
    assert source_line(first, "network_alpha") == line_of(md, "--network_alpha 4")
    assert settings(second) == {"network_dim": 16, "seed": 5}
    txt = write(tmp_path, """
        pod log 2024-03-01
        $ accelerate launch --num_processes 2 sdxl_train_network.py --network_dim 64 \\
            --seed 9
        the loss went to nan at epoch 3
    """, name="notes.txt")
    (ev,) = parse_notes(txt)
    assert ev.script == "sdxl_train_network.py" and settings(ev) == {"network_dim": 64, "seed": 9}
    assert ev.facts["accelerate"]["num_processes"] == "2" and ev.warnings == []


def test_several_commands_in_a_note_are_several_runs(tmp_path):
    d = tmp_path / "history"
    d.mkdir()
    write(d, """
        ```bash
        accelerate launch sdxl_train.py --learning_rate 4e-6 --train_batch_size 1 --full_bf16
        ```
        ```bash
        accelerate launch sdxl_train_network.py --learning_rate 1e-4 --network_dim 32
        ```
    """, name="runs.md")
    from lora_audit.evidence import load_runs

    ft, lora = load_runs([d])
    assert (ft.name, lora.name) == ("history-runs-1", "history-runs-2")
    assert ft.script == "sdxl_train.py" and lora.script == "sdxl_train_network.py"
    assert lora.params["learning_rate"].value == 1e-4
    assert lora.params.get("full_bf16") is None or lora.params["full_bf16"].origin != "explicit"
    assert lora.params["train_batch_size"].origin != "explicit"  # the fine-tune's batch never leaks
    with pytest.raises(EvidenceError, match="each is a run of its own"):
        load_run(d)
    assert load_run(d, name="history-runs-2").params["network_dim"].value == 32


METADATA_BLOCK = """
# My LoRA

Metadata (from the safetensors):

```json
{
    "ss_base_model_version": "sd_v1",
    "ss_output_name": "LighthouseLora",
    "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit",
    "ss_network_dim": "16",
    "ss_tag_frequency": {"10_lighthouse": {"lighthouse": 12}},
    "ss_lr_scheduler": "cosine",
    "ss_network_alpha": "8",
    "ss_learning_rate": "0.0001",
    "ss_resolution": "(512, 512)",
    "ss_num_epochs": 10
}
```
"""


def test_a_metadata_block_in_a_readme_is_the_loras_metadata(tmp_path):
    p = write(tmp_path, METADATA_BLOCK, name="README.md")
    (ev,) = parse_notes(p)
    assert ev.kind == "metadata"
    got = settings(ev)
    assert got["network_dim"] == 16 and got["network_alpha"] == 8.0 and got["learning_rate"] == 1e-4
    assert got["optimizer_type"] == "AdamW8bit" and got["resolution"] == "512,512"
    assert source_line(ev, "network_dim") == line_of(p, '"ss_network_dim"')


def test_metadata_dump_files(tmp_path):
    from click.testing import CliRunner

    from lora_audit.cli import main

    d = tmp_path / "run"
    d.mkdir()
    # kohya's tools/show_metadata.py prints json.dumps(metadata, indent=2): every value a string
    (d / "punks_metadata.json").write_text(
        '{\n  "ss_network_module": "networks.lora",\n  "ss_network_dim": "32",\n  "ss_network_alpha": "16.0",\n'
        '  "ss_noise_offset": "0.1",\n  "ss_seed": "42",\n  "ss_caption_dropout_rate": "0.0"\n}\n')
    # a whole header dump: __metadata__ beside the tensors
    (d / "header.json").write_text(json_dump := (
        '{"__metadata__": {"ss_network_dim": "32", "ss_min_snr_gamma": "5.0"},\n'
        ' "lora_unet_x.lora_down.weight": {"dtype": "F16", "shape": [32, 320], "data_offsets": [0, 20480]}}'))
    assert json_dump
    r = CliRunner().invoke(main, ["inspect", str(d), "--json"])
    assert r.exit_code == 0, r.output
    import json

    (run,) = json.loads(r.output)["runs"]
    params = run["params"]
    assert params["network_dim"]["value"] == 32 and params["network_dim"]["origin"] == "explicit"
    assert params["network_dim"]["source"].endswith("header.json:1") or \
        params["network_dim"]["source"].endswith("punks_metadata.json:3")
    assert params["noise_offset"]["value"] == 0.1 and params["min_snr_gamma"]["value"] == 5.0
    assert {e["kind"] for e in run["evidence"]} == {"metadata"}


def test_a_fence_of_any_language_holding_a_training_command(tmp_path):
    p = write(tmp_path, """
        ```log
        2024-03-01 12:00 launching
        accelerate launch train_network.py --network_dim 12 \\
          --seed 3
        ```
        ```yaml
        command: accelerate launch train_network.py --network_dim 99
        ```
    """)
    (ev,) = parse_notes(p)
    assert settings(ev) == {"network_dim": 12, "seed": 3}


def test_metadata_saved_with_pprint_under_a_json_name(tmp_path):
    # ka-de/cringe.live's Inspect-Lora: pprint.pprint(metadata) written to <lora>.json next to the LoRA
    d = tmp_path / "run"
    d.mkdir()
    (d / "my_lora.json").write_text("{'ss_network_alpha': '8.0',\n 'ss_network_dim': '16',\n"
                                    " 'ss_tag_frequency': {'10_x': {'x': 3}},\n 'ss_v2': 'False'}\n")
    run = load_run(d)
    assert run.params["network_dim"].value == 16 and run.params["network_dim"].source == f"{d / 'my_lora.json'}:2"
    (d / "my_lora.json").write_text("{'not': 'metadata'")
    with pytest.raises(EvidenceError, match="invalid JSON"):
        load_run(d)


def test_show_metadata_output_redirected_to_a_txt(tmp_path):
    p = write(tmp_path, '{\n    "ss_learning_rate": "0.0002",\n    "ss_network_dim": "64"\n}\n', name="meta.txt")
    (ev,) = parse_notes(p)
    assert ev.kind == "metadata" and settings(ev) == {"learning_rate": 2e-4, "network_dim": 64}
    assert source_line(ev, "network_dim") == 3
