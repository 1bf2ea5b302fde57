"""A variant pins the sd-scripts commit: when the good and bad runs were trained on different sd-scripts commits
(ss_sd_scripts_commit_hash), ablate records each variant's commit in variant.json and launch runs kohya from a
git worktree of the user's checkout at that commit (under the study folder; the checkout's working tree and
branches untouched; reused on relaunch). The checkout is a small git repo made here, its Python a stand-in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GOOD, write_run
from loras import write_lora
from test_launch_kohya_env import FAKE_PYTHON, _exe, launch, log_of
from test_sd_scripts_version import _commit, _git

from lora_audit.cli import main as cli_main

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def checkout(root: Path) -> tuple[Path, str, str]:
    """The user's sd-scripts clone: commit OLD, then NEW (checked out on main, with an uncommitted edit)."""
    repo = root / "sd-scripts"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    old = _commit(repo, {"train_network.py": "# old\n", "library/train_util.py": "old\n"}, "old")
    _commit(repo, {"docs/a.md": "x\n"}, "docs")
    new = _commit(repo, {"library/train_util.py": "new\n"}, "new loss")
    (repo / "train_network.py").write_text("# the user's own uncommitted edit\n")
    return repo, old, new


def run_with_lora(root: Path, name: str, commit: str, verdict: str) -> Path:
    d = write_run(root, name, GOOD, verdict)
    write_lora(d / "lora.safetensors", network_dim=32, network_alpha=16,
               metadata={"ss_sd_scripts_commit_hash": commit, "ss_network_module": "networks.lora"})
    return d


@pytest.fixture
def pinned(tmp_path):
    repo, old, new = checkout(tmp_path)
    good = run_with_lora(tmp_path, "good", old, "good")
    bad = run_with_lora(tmp_path, "bad", new, "bad")
    study = tmp_path / "study"
    r = CliRunner().invoke(cli_main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(study)])
    assert r.exit_code == 0, r.output
    return repo, old, new, study


def _variants(study: Path) -> dict[str, dict]:
    import tomllib

    ids = tomllib.loads((study / "study.toml").read_text())["variants"]
    return {v: json.loads((study / v / "variant.json").read_text()) for v in ids}


def test_ablate_records_each_variants_commit(pinned):
    repo, old, new, study = pinned
    records = _variants(study)
    by_change = {tuple(c["param"] for c in r["changes"]): (vid, r) for vid, r in records.items()}
    assert set(by_change) == {(), ("sd_scripts_commit",)}  # the control, and the version change alone
    control, changed = by_change[()], by_change[("sd_scripts_commit",)]
    assert control[1]["sd_scripts_commit"] == old and changed[1]["sd_scripts_commit"] == new
    assert "sd_scripts_commit" not in (study / changed[0] / "config.toml").read_text()  # no kohya argument


def test_launch_runs_each_variant_from_a_worktree_at_its_commit(pinned, tmp_path):
    repo, old, new, study = pinned
    py = _exe(tmp_path / "env" / "bin" / "python", FAKE_PYTHON)
    branch_before = _git(repo, "rev-parse", "--abbrev-ref", "HEAD")
    r = launch("launch", str(study), "--sd-scripts", str(repo), "--python", str(py))
    assert r.exit_code == 0, r.output
    records = _variants(study)
    for vid, rec in records.items():
        wt = (study / "sd-scripts-worktrees" / rec["sd_scripts_commit"]).resolve()
        log = log_of(study, vid)
        assert f"[{wt}/train_network.py]" in log and f"sd={wt}\n" in log
        assert f"sd-scripts: {wt} (commit {rec['sd_scripts_commit'][:10]} pinned by the variant: a git worktree of" \
               in log
        assert _git(wt, "rev-parse", "HEAD") == rec["sd_scripts_commit"]
    assert (study / "sd-scripts-worktrees" / old / "library" / "train_util.py").read_text() == "old\n"
    # the user's checkout: same branch, same commit, their uncommitted edit still there
    assert _git(repo, "rev-parse", "--abbrev-ref", "HEAD") == branch_before == "main"
    assert _git(repo, "rev-parse", "HEAD") == new
    assert (repo / "train_network.py").read_text() == "# the user's own uncommitted edit\n"
    assert len(_git(repo, "worktree", "list").splitlines()) == 3
    # a relaunch reuses the worktrees
    r = launch("launch", str(study), "--sd-scripts", str(repo), "--python", str(py), "--retry")
    assert r.exit_code == 0, r.output
    assert len(_git(repo, "worktree", "list").splitlines()) == 3
    vid = next(iter(records))
    assert "pinned by the variant" in log_of(study, vid, 2)


def test_a_commit_the_checkout_lacks_is_one_line(pinned, tmp_path):
    repo, old, new, study = pinned
    vid, rec = next((v, r) for v, r in _variants(study).items() if r["changes"])
    rec["sd_scripts_commit"] = "0123456789abcdef"
    (study / vid / "variant.json").write_text(json.dumps(rec))
    py = _exe(tmp_path / "env" / "bin" / "python", FAKE_PYTHON)
    r = launch("launch", str(study), "--sd-scripts", str(repo), "--python", str(py))
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"error: variant {vid} pins sd-scripts commit 0123456789abcdef, which is not in {repo}: git -C {repo} fetch "
        "(or give --sd-scripts DIR of a clone that has it)"]
    assert not (study / "sd-scripts-worktrees").exists()


def test_runs_on_one_commit_pin_nothing(tmp_path):
    good = run_with_lora(tmp_path, "good", "a" * 40, "good")
    bad = write_run(tmp_path, "bad", GOOD.replace("network_dim = 32", "network_dim = 16"), "bad")
    write_lora(bad / "lora.safetensors", network_dim=16, network_alpha=16,
               metadata={"ss_sd_scripts_commit_hash": "a" * 40})
    study = tmp_path / "study"
    r = CliRunner().invoke(cli_main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(study)])
    assert r.exit_code == 0, r.output
    assert all("sd_scripts_commit" not in rec for rec in _variants(study).values())
