"""The wheel holds what the tool reads at run time (templates, the kohya catalog and data, the rules), and the
tool finds its templates whether it is installed (wheel or editable) or imported from a checkout.

`.ci/run` does the full proof (the wheel pip-installed alone, without torch, in a fresh venv, running the README's
audit); these tests need no network: the wheel is built without build isolation and used unpacked."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the third-party packages of this environment, without its .pth files (an editable install's finder is one)
SITE = sysconfig.get_paths()["purelib"]


def _run_cli(pythonpath: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`lora-audit ARGS` with only ``pythonpath`` (no site processing: no editable-install finder)."""
    code = ("import sys, importlib.util as u\n"
            "from lora_audit.cli import main\n"
            "import lora_audit, lora_audit.report.templates as t\n"
            "print('package:', lora_audit.__file__, file=sys.stderr)\n"
            "print('templates:', t.template_dir(), file=sys.stderr)\n"
            "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
            "main(sys.argv[1:])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-S", "-c", code, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _audit_here(tmp: Path, pythonpath: str) -> tuple[subprocess.CompletedProcess, Path]:
    work = tmp / "elsewhere"
    shutil.copytree(ROOT / "runs" / "examples", work / "runs" / "examples")
    r = _run_cli(pythonpath, work, "audit", "runs/examples/bespoke-punks")
    return r, work / "reports" / "bespoke-punks.md"


def test_a_checkout_imported_without_install_finds_templates_in_the_source_tree(tmp_path):
    r, report = _audit_here(tmp_path, os.pathsep.join([str(ROOT), SITE]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"templates: {ROOT / 'templates'}" in r.stderr
    assert "torch imported: False" in r.stderr
    assert report.read_text(encoding="utf-8").startswith("# ")


@pytest.mark.slow
def test_wheel_holds_the_run_time_files_and_runs_the_audit_unpacked(tmp_path):
    if importlib.util.find_spec("build") is None:
        pytest.skip("needs the 'build' package (the test extra)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("lora_audit", "templates"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = out.glob("lora_audit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"lora_audit/_templates/{p.name}" for p in (ROOT / "templates").glob("*.j2")}
    for data in ("lora_audit/kohya/data", "lora_audit/rules"):
        wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / data).iterdir() if p.suffix in (".json", ".toml")}
    wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "lora_audit").rglob("*.py")}
    assert wanted - names == set()
    assert any(n.endswith("entry_points.txt") for n in names)

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    r, report = _audit_here(tmp_path, os.pathsep.join([str(unpacked), SITE]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"package: {unpacked / 'lora_audit' / '__init__.py'}" in r.stderr
    assert f"templates: {unpacked / 'lora_audit' / '_templates'}" in r.stderr
    assert "torch imported: False" in r.stderr
    assert report.read_text(encoding="utf-8").startswith("# ")
