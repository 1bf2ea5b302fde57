"""pyproject lists packages explicitly (templates/ is mapped in): no subpackage may be forgotten."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "lora_audit").rglob("__init__.py")}
    assert found <= listed, found - listed
    assert "lora_audit._templates" in listed and (ROOT / "templates" / "audit.md.j2").exists()
