"""The shape of the CLI: every command lives in lora_audit/commands/ (the only place that imports click) and has
help text; the public API of lora_audit/__init__.py is documented and light to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import lora_audit
from lora_audit.cli import main
from lora_audit.errors import EvidenceError

PACKAGE = Path(lora_audit.__file__).parent
EXAMPLES = Path(__file__).parent.parent / "runs" / "examples" / "bespoke-punks"


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    for name, cmd in sorted(group.commands.items()):
        found.append(((*prefix, name), cmd))
        if isinstance(cmd, click.Group):
            found += _commands(cmd, (*prefix, name))
    return found


COMMANDS = _commands(main)


def test_the_cli_has_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"inspect", "diff", "infer-dim", "weights", "audit", "ablate", "bisect", "bisect start", "bisect good",
            "bisect bad", "bisect unsure", "bisect next", "bisect log", "launch", "status", "compare", "vote",
            "stats", "export", "make-tiny-model", "make-toy-dataset", "train"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_text_and_lives_in_the_commands_layer(path, cmd):
    assert (cmd.help or "").strip(), f"{' '.join(path)} has no docstring"
    module = cmd.callback.__module__ if cmd.callback else ""
    assert module.startswith("lora_audit.commands."), f"{' '.join(path)} is defined in {module}"
    r = CliRunner().invoke(main, [*path, "--help"])
    assert r.exit_code == 0, r.output
    first = cmd.help.strip().split()[0]
    assert first in r.output and "Usage:" in r.output


def _imports_click(source: str) -> bool:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "click" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "click":
            return True
    return False


def test_only_the_commands_layer_imports_click():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "commands" or rel == Path("cli.py"):
            continue
        if _imports_click(path.read_text(encoding="utf-8")):
            offenders.append(str(rel))
    assert offenders == []
    # the scan sees an import where there is one
    assert _imports_click((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    assert _imports_click("def f():\n    from click.testing import CliRunner\n")


def test_public_api_names_exist_and_are_documented():
    assert lora_audit.__all__ and len(set(lora_audit.__all__)) == len(lora_audit.__all__)
    for name in lora_audit.__all__:
        value = getattr(lora_audit, name)
        assert callable(value), name
        assert (value.__doc__ or "").strip(), f"lora_audit.{name} has no docstring"
    assert set(lora_audit.__all__) <= set(dir(lora_audit))
    with pytest.raises(AttributeError):
        lora_audit.no_such_name  # noqa: B018


def test_import_lora_audit_is_light():
    code = ("import sys, lora_audit; print(sorted(m for m in ('torch', 'diffusers', 'numpy', 'click', 'pydantic') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_the_python_api_does_what_the_audit_command_does(tmp_path):
    """The README's Python API example, and the same report as ``lora-audit audit``."""
    good, bad = lora_audit.load_runs([EXAMPLES / "sd15_perfect", EXAMPLES / "sdxl_current"])
    assert (good.params["network_dim"].value, good.params["network_dim"].origin) == (32, "explicit")
    titles = [f.title for f in lora_audit.find_suspects(good, bad, lora_audit.diff_runs([good, bad]))]
    assert any("architecture switched" in t for t in titles)
    report = lora_audit.audit_runs([EXAMPLES], out=tmp_path / "api.md", report_date="2025-01-02")
    assert report.path == tmp_path / "api.md" and report.audit.date == "2025-01-02"
    r = CliRunner().invoke(main, ["audit", str(EXAMPLES), "--out", str(tmp_path / "cli.md"), "--date", "2025-01-02"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "api.md").read_text() == (tmp_path / "cli.md").read_text()
    assert lora_audit.audit_runs([EXAMPLES], write=False).path == Path("reports") / "bespoke-punks.md"


def test_one_rule_picks_good_and_bad_runs(tmp_path):
    runs = lora_audit.load_runs([EXAMPLES])
    goods, bads = lora_audit.pick_runs(runs)  # the run.toml verdicts
    assert [r.name for r in goods] == ["SD15_PERFECT"] and len(bads) == 2
    goods, bads = lora_audit.pick_runs(runs, "SD15_PERFECT", str(EXAMPLES / "sdxl_current"))  # a name, a folder
    assert [r.name for r in bads] == ["SDXL_Current"]
    with pytest.raises(EvidenceError, match="no run named 'zzz'"):
        lora_audit.pick_runs(runs, "zzz")


def test_the_readme_python_api_example_runs():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("32 explicit ") and "runpod_train_sd15.sh:" in lines[0]
    assert lines[1] == "primary Base architecture switched: sd15 → sdxl"
    assert "['SD15_PERFECT']" in lines[4] and lines[5].endswith(" variants")
