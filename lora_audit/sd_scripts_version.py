"""The sd-scripts version as a change: what lies between the commits two runs were trained with.

kohya writes ``ss_sd_scripts_commit_hash`` into every LoRA (``train_network.py``: ``train_util.get_git_revision_hash``,
``git rev-parse HEAD`` of the checkout, "unknown" when that fails); it is read back as the run's parameter
``sd_scripts_commit`` (``kohya.metadata_keys``) and diffed like any other. With a local sd-scripts checkout this
module says how many commits lie between the two and which of them touch training code (``library/``,
``networks/``, the top-level ``*train*.py`` scripts).

git runs as an argv list (never a shell), with a timeout, no prompt and no pager; a commit the checkout does not
have, a folder that is not a git checkout, or no git at all is one warning line, never an error.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from pydantic import BaseModel, Field

from lora_audit.model import Run

PARAM = "sd_scripts_commit"
GIT_TIMEOUT = 30.0
# what "training code" is in sd-scripts: the library, the network modules and the training scripts at the top
TRAINING_PATHSPECS = ("library", "networks", ":(glob)*train*.py")
_HEX = re.compile(r"^[0-9a-fA-F]{7,40}$")
SHOWN = 20  # commits listed in text; JSON has them all


class GitError(Exception):
    """git failed, timed out or is missing: the message is one line."""


class Commit(BaseModel):
    sha: str
    subject: str
    files: list[str] = Field(default_factory=list)  # the training-code files it touches


class VersionChange(BaseModel):
    """``sd_scripts_commit`` differs between ``base_run`` and ``run``."""

    base_run: str
    run: str
    from_commit: str | None
    to_commit: str | None
    checkout: str | None = None
    direction: str | None = None  # forward (run is newer), backward (older), diverged (neither contains the other)
    commits: int | None = None  # commits between (both sides added up when diverged)
    training_commits: list[Commit] = Field(default_factory=list)
    warning: str | None = None
    trained: dict[str, str] = Field(default_factory=dict)  # run -> when training started (ss_training_started_at)

    def summary(self) -> str | None:
        """``4 commits forward, 3 touch training code (...) in DIR``; None when nothing was counted."""
        if self.commits is None:
            return None
        if self.direction == "same":
            return "the same commit"
        if self.direction == "diverged":
            span = f"{self.commits} commits apart on diverged histories"
        else:
            span = f"{self.commits} commit{'s' if self.commits != 1 else ''} " + (
                "forward" if self.direction == "forward" else f"backward ({self.run} is on an older version)")
        return (f"{span}, {len(self.training_commits)} touch training code (library/, networks/, *train*.py) in "
                f"{self.checkout}")

    def lines(self, shown: int = SHOWN) -> list[str]:
        """Text for ``diff`` and ``audit``: one summary line, then the training-code commits."""
        head = f"sd-scripts version {self.base_run} → {self.run}: {self.from_commit} → {self.to_commit}"
        if self.trained:
            head += " (trained " + ", ".join(f"{k} {v}" for k, v in self.trained.items()) + ")"
        summary = self.summary()
        if summary is None:
            return [head + (f"; {self.warning}" if self.warning else "")]
        out = [f"{head}: {summary}"]
        for c in self.training_commits[:shown]:
            files = ", ".join(c.files[:4]) + (f", +{len(c.files) - 4}" if len(c.files) > 4 else "")
            out.append(f"  {c.sha[:10]} {c.subject} ({files})")
        if len(self.training_commits) > shown:
            out.append(f"  ... {len(self.training_commits) - shown} more (--json lists them all)")
        return out


def git(checkout: str | os.PathLike, *args: str, timeout: float = GIT_TIMEOUT) -> str:
    """``git -C checkout ARGS`` → stdout. Raises GitError with one line."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    try:
        res = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL, env=env, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} took over {timeout:.0f} s") from None
    except OSError as e:
        raise GitError(f"git cannot run: {e.strerror or e}") from None
    if res.returncode != 0:
        last = next((ln.strip() for ln in reversed(res.stderr.splitlines()) if ln.strip()), f"exit {res.returncode}")
        raise GitError(f"git {args[0]}: {last}")
    return res.stdout


def is_checkout(path: str | os.PathLike | None) -> bool:
    """A git checkout of its own (``.git`` folder, or the file a worktree/submodule has): an empty submodule folder
    inside another repository is not one, and git must not answer for the repository around it."""
    return path is not None and (Path(path) / ".git").exists()


def resolve_commit(checkout: str | os.PathLike, rev: str) -> str | None:
    """The full sha of ``rev`` (a hex commit id, full or abbreviated) in the checkout, None when it lacks it."""
    if not _HEX.match(rev or ""):
        return None
    try:
        return git(checkout, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip() or None
    except GitError:
        return None


def _is_ancestor(checkout: str | os.PathLike, a: str, b: str) -> bool:
    try:
        git(checkout, "merge-base", "--is-ancestor", a, b)
        return True
    except GitError:
        return False


def _training_commits(checkout: str | os.PathLike, rng: list[str]) -> list[Commit]:
    out = git(checkout, "log", "--no-color", "--no-renames", "--format=%x1e%H%x1f%s", "--name-only", *rng, "--",
              *TRAINING_PATHSPECS)
    commits = []
    for block in out.split("\x1e")[1:]:
        first, _, rest = block.partition("\n")
        sha, _, subject = first.partition("\x1f")
        commits.append(Commit(sha=sha.strip(), subject=subject.strip(),
                              files=[f.strip() for f in rest.splitlines() if f.strip()]))
    return commits


def compare_commits(checkout: str | os.PathLike | None, a: str, b: str, base_run: str = "baseline",
                    run: str = "run") -> VersionChange:
    """How far commit ``b`` (run) is from ``a`` (base_run) in the checkout, and the commits touching training code."""
    vc = VersionChange(base_run=base_run, run=run, from_commit=a, to_commit=b)
    bad = [c for c in (a, b) if not _HEX.match(c or "")]
    if bad:
        vc.warning = f"{bad[0]!r} is not a git commit id; nothing to count"
        return vc
    if not is_checkout(checkout):
        vc.warning = ("no sd-scripts checkout to count the commits between (give --sd-scripts DIR)" if checkout is None
                      else f"{checkout} is not a git checkout; cannot count the commits between")
        return vc
    vc.checkout = str(checkout)
    repo = Path(checkout)  # type: ignore[arg-type]  # is_checkout: not None
    try:
        fa, fb = resolve_commit(repo, a), resolve_commit(repo, b)
        if fa is None or fb is None:
            vc.warning = (f"commit {a if fa is None else b} is not in the sd-scripts checkout {checkout} (git fetch "
                          "there); cannot count the commits between")
            return vc
        if fa == fb:  # one written short, the other full
            vc.direction, vc.commits = "same", 0
            return vc
        if _is_ancestor(repo, fa, fb):
            vc.direction, rng = "forward", [f"{fa}..{fb}"]
        elif _is_ancestor(repo, fb, fa):
            vc.direction, rng = "backward", [f"{fb}..{fa}"]
        else:
            vc.direction, rng = "diverged", [f"{fa}...{fb}"]
        vc.commits = int(git(repo, "rev-list", "--count", *rng).strip() or 0)
        vc.training_commits = _training_commits(repo, rng)
    except (GitError, ValueError) as e:
        vc.warning = str(e)
        vc.commits, vc.training_commits = None, []
    return vc


def version_changes(runs: list[Run], checkout: str | os.PathLike | None = None) -> list[VersionChange]:
    """For every run whose known ``sd_scripts_commit`` differs from the first run's: the VersionChange."""
    if len(runs) < 2:
        return []
    base = runs[0]
    a = base.value(PARAM)
    out = []
    for r in runs[1:]:
        b = r.value(PARAM)
        if a is None or b is None or str(a) == str(b):
            continue
        vc = compare_commits(checkout, str(a), str(b), base.name, r.name)
        vc.trained = {x.name: t for x in (base, r) if (t := trained_at(x))}
        out.append(vc)
    return out


def trained_at(run: Run) -> str | None:
    """When the run's training started, UTC, from the LoRA's ``ss_training_started_at`` (kohya: ``time.time()``)."""
    t = run.facts.get("training_started_at")
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return None
    from datetime import UTC, datetime

    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return None


def checkout(option: str | os.PathLike | None = None, global_option: str | os.PathLike | None = None) -> Path | None:
    """The sd-scripts checkout to count commits in: the command's ``--sd-scripts``, the global one (or
    ``$LORA_AUDIT_SD_SCRIPTS``), else the repository's submodule when it is a checkout of its own."""
    from lora_audit.settings import sd_scripts_path

    if option or global_option:
        return Path(option or global_option)  # type: ignore[arg-type]
    path = sd_scripts_path()
    return path if is_checkout(path) or os.environ.get("LORA_AUDIT_SD_SCRIPTS") else None
