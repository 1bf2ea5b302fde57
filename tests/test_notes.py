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
