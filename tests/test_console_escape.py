"""The terminal tables show what a file holds, never run it: a run name (run.toml) or value with a terminal escape or
a line break prints escaped (``\\x1b``, ``\\n``), as error lines do, so it can neither recolour the terminal nor forge
a row of the table."""

from pathlib import Path

from click.testing import CliRunner

from lora_audit.cli import main

NAME = 'good\\u001b[31m\\nnetwork_dim  999  explicit'  # TOML escapes: ESC [31m, then a line forging a table row


def run(folder: Path, name: str | None, dim: int, output_name: str = "x") -> Path:
    folder.mkdir()
    (folder / "train.sh").write_text(f"accelerate launch train_network.py --network_dim {dim} "
                                     f"--output_name '{output_name}'\n")
    if name is not None:
        (folder / "run.toml").write_text(f'name = "{name}"\nverdict = "good"\n')
    return folder


def test_diff_and_inspect_escape_run_names_and_values(tmp_path):
    good = run(tmp_path / "good", NAME, 8, output_name="a\x1b]0;title\x07b")
    bad = run(tmp_path / "bad", None, 16)
    r = CliRunner().invoke(main, ["diff", str(good), str(bad)])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "good\\x1b[31m\\nnetwork_dim  999  explicit" in r.output
    assert not any(line.startswith("network_dim  999") for line in r.output.splitlines())
    r = CliRunner().invoke(main, ["inspect", str(good)])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert r.output.splitlines()[0].startswith("run good\\x1b[31m\\nnetwork_dim  999  explicit  verdict: good")
    assert "a\\x1b]0;title\\x07b" in r.output  # a value from the script, in its table cell
