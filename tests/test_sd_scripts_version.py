"""The sd-scripts version as a change: ss_sd_scripts_commit_hash read from LoRA metadata, diffed like a parameter,
and with a local checkout the commits between and those touching training code (a small git repo made here)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from loras import kohya_metadata, write_lora

from lora_audit.cli import main
from lora_audit.evidence import load_runs
from lora_audit.sd_scripts_version import compare_commits, version_changes

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(repo), "PATH": "/usr/bin:/bin"}
                          ).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        p = repo / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def make_sd_scripts(root: Path) -> tuple[Path, list[str]]:
    """A stand-in sd-scripts repo: commits touching library/, docs/, a training script, networks/, a tool."""
    repo = root / "sd-scripts"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    shas = [_commit(repo, {"library/train_util.py": "a\n", "train_network.py": "t\n"}, "initial")]
    shas.append(_commit(repo, {"docs/train_README.md": "d\n"}, "docs: explain"))
    shas.append(_commit(repo, {"library/train_util.py": "a\nb\n"}, "fix the loss recorder"))
    shas.append(_commit(repo, {"tools/resize.py": "r\n"}, "tools only"))
    shas.append(_commit(repo, {"networks/lora.py": "n\n", "sdxl_train_network.py": "s\n"}, "LoRA | SDXL change"))
    return repo, shas


def _runs(tmp_path: Path, a: str, b: str) -> tuple[Path, Path]:
    fa = write_lora(tmp_path / "old.safetensors", metadata=kohya_metadata(ss_sd_scripts_commit_hash=a))
    fb = write_lora(tmp_path / "new.safetensors", metadata=kohya_metadata(
        ss_sd_scripts_commit_hash=b, ss_training_started_at="1732000000.0", ss_training_finished_at="1732003600.0"))
    return fa, fb


def test_commits_between_and_training_code(tmp_path):
    repo, shas = make_sd_scripts(tmp_path)
    vc = compare_commits(repo, shas[0][:10], shas[-1], "old", "new")
    assert (vc.direction, vc.commits) == ("forward", 4)
    assert [c.subject for c in vc.training_commits] == ["LoRA | SDXL change", "fix the loss recorder"]
    assert vc.training_commits[0].files == ["networks/lora.py", "sdxl_train_network.py"]
    back = compare_commits(repo, shas[-1], shas[1])
    assert (back.direction, back.commits, len(back.training_commits)) == ("backward", 3, 2)
    same = compare_commits(repo, shas[2][:8], shas[2])
    assert (same.direction, same.commits) == ("same", 0)


def test_missing_commit_is_a_warning(tmp_path):
    repo, shas = make_sd_scripts(tmp_path)
    vc = compare_commits(repo, shas[0], "deadbeef00")
    assert vc.commits is None and "commit deadbeef00 is not in the sd-scripts checkout" in vc.warning
    vc = compare_commits(tmp_path / "nowhere", shas[0], shas[1])
    assert vc.commits is None and "not a git checkout" in vc.warning
    vc = compare_commits(repo, "--output=x", shas[1])  # never handed to git as an option
    assert vc.commits is None and "not a git commit id" in vc.warning


def test_metadata_flows_into_the_run(tmp_path):
    repo, shas = make_sd_scripts(tmp_path)
    runs = load_runs([str(p) for p in _runs(tmp_path, shas[0], shas[-1])])
    assert runs[1].value("sd_scripts_commit") == shas[-1]
    assert runs[1].facts["training_started_at"] == 1732000000.0
    assert runs[1].facts["training_finished_at"] == 1732003600.0
    [vc] = version_changes(runs, repo)
    shown = json.loads(CliRunner().invoke(main, ["inspect", "--json", str(tmp_path / "new.safetensors")]).output)
    assert shown["runs"][0]["training_time"] == {"training_started_at": 1732000000.0,
                                                 "training_finished_at": 1732003600.0}
    assert vc.trained == {"old": "2024-11-09 19:20 UTC", "new": "2024-11-19 07:06 UTC"} and vc.commits == 4


def test_diff_cli_reports_the_version_change(tmp_path):
    repo, shas = make_sd_scripts(tmp_path)
    a, b = _runs(tmp_path, shas[0][:10], shas[-1])
    r = CliRunner().invoke(main, ["diff", str(a), str(b), "--sd-scripts", str(repo)])
    assert r.exit_code == 0, r.output
    row = next(ln for ln in r.output.splitlines() if ln.startswith("sd_scripts_commit"))
    assert shas[0][:10] in row and shas[-1] in row
    assert (f"4 commits forward, 2 touch training code (library/, networks/, *train*.py) in {repo}"
            in r.output)
    assert f"  {shas[2][:10]} fix the loss recorder (library/train_util.py)" in r.output
    assert "docs: explain" not in r.output
    data = json.loads(CliRunner().invoke(main, ["diff", "--json", str(a), str(b), "--sd-scripts",
                                                str(repo)]).output)
    [v] = data["sd_scripts_versions"]
    assert v["commits"] == 4 and [c["sha"] for c in v["training_commits"]] == [shas[4], shas[2]]
    # a commit the checkout lacks: the change is still shown, one warning line, exit 0
    a2, _ = _runs(tmp_path, "0123456789ab", shas[-1])
    r = CliRunner().invoke(main, ["diff", str(a2), str(b), "--sd-scripts", str(repo)])
    assert r.exit_code == 0, r.output
    assert "commit 0123456789ab is not in the sd-scripts checkout" in r.output


def test_audit_report_has_the_version_section(tmp_path):
    repo, shas = make_sd_scripts(tmp_path)
    a, b = _runs(tmp_path, shas[0], shas[-1])
    for name, f, verdict in (("good", a, "good"), ("bad", b, "bad")):
        (tmp_path / name).mkdir()
        f.rename(tmp_path / name / f.name)
        (tmp_path / name / "run.toml").write_text(f'name = "{name}"\nverdict = "{verdict}"\n')
    out = tmp_path / "report.md"
    r = CliRunner().invoke(main, ["audit", str(tmp_path / "good"), str(tmp_path / "bad"), "--out", str(out),
                                  "--sd-scripts", str(repo)])
    assert r.exit_code == 0, r.output
    assert "primary suspects: sd_scripts_commit" in r.output
    md = out.read_text()
    assert "**sd-scripts version good → bad:**" in md and "4 commits forward" in md
    assert f"- `{shas[4][:10]}` LoRA \\| SDXL change (networks/lora.py, sdxl_train_network.py)" in md
