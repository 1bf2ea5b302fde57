"""gen_catalog records the sd-scripts commit, never the commit of a repository around it (an uninitialised
submodule, or a copy of sd-scripts inside another repository, makes `git rev-parse HEAD` answer with the parent's)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lora_audit.kohya import gen_catalog

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

SCRIPT = "def setup_parser():\n    parser = None\n    parser.add_argument('--network_dim', type=int)\n"
SD_SCRIPTS = {"train_network.py": SCRIPT, "library/config_util.py": "class ConfigSanitizer:\n    X_SCHEMA = {}\n"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c",
                           "protocol.file.allow=always", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def repo(path: Path, files: dict[str, str]) -> str:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-qm", "x")
    return git(path, "rev-parse", "HEAD")


@pytest.fixture
def parent(tmp_path):
    """A project repository pinning sd-scripts as a submodule (a gitlink), the submodule not initialised."""
    sd_commit = repo(tmp_path / "upstream", SD_SCRIPTS)
    p = tmp_path / "project"
    repo(p, {"README.md": "x\n"})
    git(p, "submodule", "add", "-q", str(tmp_path / "upstream"), "sd-scripts")
    git(p, "commit", "-qm", "pin sd-scripts")
    git(p, "submodule", "deinit", "-q", "-f", "sd-scripts")  # the state of a fresh clone: an empty folder
    assert (p / "sd-scripts").is_dir() and not any((p / "sd-scripts").iterdir())
    return p, sd_commit, git(p, "rev-parse", "HEAD")


def test_uninitialised_submodule_gives_the_gitlink_not_the_parents_head(parent):
    p, sd_commit, parent_head = parent
    assert gen_catalog.checkout_commit(p / "sd-scripts") == sd_commit != parent_head


def test_uninitialised_submodule_is_refused_in_one_line(parent, tmp_path, capsys):
    p, _, _ = parent
    out = tmp_path / "catalog.json"
    assert gen_catalog.main([str(p / "sd-scripts"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "git submodule update --init sd-scripts" in err
    assert not out.exists()


def test_initialised_submodule_records_its_own_head(parent, tmp_path):
    p, sd_commit, parent_head = parent
    git(p, "submodule", "update", "--init", "-q", "sd-scripts")
    out = tmp_path / "catalog.json"
    assert gen_catalog.main([str(p / "sd-scripts"), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["sd_scripts_commit"] == sd_commit and data["scripts"] == ["train_network.py"]


def test_a_copy_inside_another_repository_records_no_commit(tmp_path, capsys):
    """sd-scripts files committed as a plain folder of some repository: git knows no sd-scripts commit."""
    p = tmp_path / "project"
    repo(p, {f"sd-scripts/{name}": text for name, text in SD_SCRIPTS.items()})
    out = tmp_path / "catalog.json"
    assert gen_catalog.main([str(p / "sd-scripts"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["sd_scripts_commit"] is None
    assert "no commit recorded (give --commit SHA)" in capsys.readouterr().err
    assert gen_catalog.main([str(p / "sd-scripts"), "--out", str(out), "--commit", "abc123"]) == 0
    assert json.loads(out.read_text())["sd_scripts_commit"] == "abc123"


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout of lora-audit")
def test_this_repositorys_submodule_matches_the_committed_catalog():
    """The pinned sd-scripts of this repository, initialised or not, is the commit the catalog was made from."""
    gitlink = git(ROOT, "ls-tree", "HEAD", "sd-scripts").split()
    if len(gitlink) < 3 or gitlink[1] != "commit":
        pytest.skip("sd-scripts is not a submodule in this checkout")
    assert gen_catalog.checkout_commit(ROOT / "sd-scripts") == gitlink[2]
    catalog = json.loads((ROOT / "lora_audit" / "kohya" / "data" / "catalog.json").read_text())
    assert catalog["sd_scripts_commit"] == gitlink[2]
