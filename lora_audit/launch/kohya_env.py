"""The kohya environment a launch trains with: which sd-scripts checkout and which Python (with accelerate).

Chosen when launching, never when the study was written: ``launch --sd-scripts DIR --python PY``, else the
global ``lora-audit --sd-scripts DIR``, else ``$LORA_AUDIT_SD_SCRIPTS`` / ``$LORA_AUDIT_KOHYA_PYTHON``, else the study's
recorded checkout when it holds the training scripts, else the repo's ``sd-scripts`` submodule. The Python defaults
to ``DIR/venv`` or ``DIR/.venv`` when there is one (how sd-scripts' README installs it), else ``accelerate`` on
PATH. Checked before the first variant starts; the runner (``train.sh``) reads the result from the environment
variables the launcher sets.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from lora_audit.errors import EvidenceError

ENV_SD_SCRIPTS = "LORA_AUDIT_SD_SCRIPTS"
ENV_PYTHON = "LORA_AUDIT_KOHYA_PYTHON"
CHECK_TIMEOUT = 300.0  # seconds for `PY -c "import accelerate, torch"` (torch imports slowly on a cold disk)


@dataclass
class KohyaEnv:
    sd_scripts: Path
    python: Path | None  # None: `accelerate` on PATH
    accelerate: str | None = None  # the accelerate executable found on PATH when python is None
    sd_scripts_from: str = ""
    python_from: str = ""
    # variant id -> full sha of the sd-scripts commit it pins (variant.json sd_scripts_commit), and where the git
    # worktrees of those commits go (<study>/sd-scripts-worktrees/<sha>); see pin / for_variant
    pins: dict[str, str] = field(default_factory=dict)
    worktrees: Path | None = None

    def for_variant(self, v) -> KohyaEnv:
        """The environment of variant ``v``: its pinned commit's worktree (made on first use, reused after), else
        this one. Raises OSError (the variant fails to start, the others run) when git cannot make the worktree."""
        sha = self.pins.get(v.id)
        if sha is None or self.worktrees is None:
            return self
        path = worktree(self.sd_scripts, sha, self.worktrees)
        if v.script and not (path / v.script).is_file():
            raise OSError(f"sd-scripts at commit {sha[:10]} has no {v.script}")
        return replace(self, sd_scripts=path, pins={}, sd_scripts_from=f"commit {sha[:10]} pinned by the variant: "
                       f"a git worktree of {self.sd_scripts} ({self.sd_scripts_from})")

    def variables(self) -> dict[str, str]:
        """What the launcher puts in each runner's environment."""
        out = {ENV_SD_SCRIPTS: str(self.sd_scripts)}
        if self.python is not None:
            out[ENV_PYTHON] = str(self.python)
        return out

    def header(self) -> list[str]:
        """Lines for the head of each attempt's log."""
        py = (f"{self.python} -m accelerate.commands.launch ({self.python_from})" if self.python is not None
              else f"{self.accelerate or 'accelerate'} launch ({self.python_from})")
        return [f"sd-scripts: {self.sd_scripts} ({self.sd_scripts_from}){_commit(self.sd_scripts)}",
                f"accelerate: {py}"]


def _commit(sd_scripts: Path) -> str:
    """``, commit abc1234`` for a git checkout (read from .git without running git), else empty."""
    git = sd_scripts / ".git"
    try:
        if git.is_file():  # a submodule or worktree: "gitdir: PATH"
            git = (sd_scripts / git.read_text(encoding="utf-8").split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = git / ref
            if ref_file.is_file():
                head = ref_file.read_text(encoding="utf-8").strip()
            else:
                packed = (git / "packed-refs").read_text(encoding="utf-8").splitlines()
                head = next((ln.split()[0] for ln in packed if ln.endswith(" " + ref)), "")
        return f", commit {head[:10]}" if len(head) >= 10 else ""
    except (OSError, IndexError, ValueError):
        return ""


WORKTREES = "sd-scripts-worktrees"


def pin(env: KohyaEnv, variants: list, study: Path) -> None:
    """Record the commits the variants pin (variant.json ``sd_scripts_commit``, written by ablate when the runs were
    trained on different sd-scripts commits). Checked now, before anything starts: the checkout must be a git
    checkout holding every pinned commit; one EvidenceError otherwise. Worktrees are made when a variant starts."""
    from lora_audit.sd_scripts_version import is_checkout, resolve_commit

    wanted = {v.id: v.sd_scripts_commit for v in variants if getattr(v, "sd_scripts_commit", None)}
    if not wanted:
        return
    if not is_checkout(env.sd_scripts):
        raise EvidenceError(f"variants {', '.join(sorted(wanted))} pin sd-scripts commits, but {env.sd_scripts} is "
                            "not a git checkout; give --sd-scripts DIR of a git clone of sd-scripts")
    for vid, commit in wanted.items():
        sha = resolve_commit(env.sd_scripts, str(commit))
        if sha is None:
            raise EvidenceError(f"variant {vid} pins sd-scripts commit {commit}, which is not in {env.sd_scripts}: "
                                f"git -C {env.sd_scripts} fetch (or give --sd-scripts DIR of a clone that has it)")
        env.pins[vid] = sha
    env.worktrees = Path(study).resolve() / WORKTREES


def worktree(checkout: Path, sha: str, root: Path) -> Path:
    """``root/<sha>``: a detached git worktree of ``checkout`` at ``sha``, made with ``git worktree add --detach``
    (the checkout's working tree and branches are left as they are; git records the worktree in its .git/worktrees)
    and reused when it is already there at that commit. Remove one with ``git -C CHECKOUT worktree remove PATH``."""
    from lora_audit.sd_scripts_version import GitError, git

    path = root / sha
    try:
        if path.exists():
            head = git(path, "rev-parse", "HEAD").strip() if (path / ".git").exists() else ""
            if head != sha:
                raise OSError(f"{path} exists but is not a worktree at {sha[:10]}: remove it and launch again")
            return path
        root.mkdir(parents=True, exist_ok=True)
        git(checkout, "worktree", "add", "--detach", str(path), sha, timeout=600)
    except GitError as e:
        raise OSError(f"sd-scripts worktree at {sha[:10]}: {e}") from None
    return path


def _submodule() -> Path:
    return Path(__file__).resolve().parents[2] / "sd-scripts"


def resolve(scripts: list[str], sd_scripts: str | os.PathLike | None = None, python: str | os.PathLike | None = None,
            recorded: str | None = None, global_option: str | os.PathLike | None = None) -> KohyaEnv:
    """Pick the checkout and the Python; raise one EvidenceError saying what to give when no choice works.

    ``scripts`` are the training scripts the variants run (``train_network.py``, ...); ``recorded`` is the
    checkout study.toml names (used only when it holds them); ``global_option`` is the CLI's ``--sd-scripts``."""
    scripts = sorted(set(scripts)) or ["train_network.py"]
    dir_, dir_from = _pick_checkout(scripts, sd_scripts, recorded, global_option)
    env = KohyaEnv(dir_, None, sd_scripts_from=dir_from)
    _pick_python(env, python)
    return env


def _pick_checkout(scripts: list[str], sd_scripts: str | os.PathLike | None, recorded: str | None,
                   global_option: str | os.PathLike | None) -> tuple[Path, str]:
    """The first candidate checkout holding every script, and where it came from (``resolve``'s order)."""
    how = ("give --sd-scripts DIR (or set LORA_AUDIT_SD_SCRIPTS), or fetch the submodule: "
           "git submodule update --init sd-scripts")
    candidates: list[tuple[Path, str]] = []
    if sd_scripts:
        candidates = [(Path(sd_scripts), "--sd-scripts")]
    elif global_option:
        candidates = [(Path(global_option), "lora-audit --sd-scripts")]
    elif os.environ.get(ENV_SD_SCRIPTS):
        candidates = [(Path(os.environ[ENV_SD_SCRIPTS]), f"${ENV_SD_SCRIPTS}")]
    else:
        if recorded and Path(recorded).is_absolute():
            candidates.append((Path(recorded), "study.toml"))
        candidates.append((_submodule(), "the sd-scripts submodule"))
    chosen = None
    for path, origin in candidates:
        if all((path / s).is_file() for s in scripts):
            chosen = (path.resolve(), origin)
            break
    if chosen is None:
        path, origin = candidates[0]
        missing = [s for s in scripts if not (path / s).is_file()]
        what = "does not exist" if not path.is_dir() else f"has no {', '.join(missing)}"
        if len(candidates) > 1:
            tried = " nor ".join(str(p) for p, _ in candidates)
            raise EvidenceError(f"no sd-scripts checkout with {', '.join(scripts)} ({tried}); {how}")
        raise EvidenceError(f"sd-scripts {path} ({origin}) {what}; {how}")
    return chosen


def _pick_python(env: KohyaEnv, python: str | os.PathLike | None) -> None:
    """Set ``env``'s Python: --python, $LORA_AUDIT_KOHYA_PYTHON, the checkout's venv, else accelerate on PATH."""
    dir_ = env.sd_scripts
    if python:
        env.python, env.python_from = _executable(str(python)), "--python"
    elif os.environ.get(ENV_PYTHON):
        env.python, env.python_from = _executable(os.environ[ENV_PYTHON]), f"${ENV_PYTHON}"
    else:
        for venv in ("venv", ".venv"):
            for exe in ("bin/python", "Scripts/python.exe"):
                if (dir_ / venv / exe).is_file():
                    env.python, env.python_from = dir_ / venv / exe, f"the checkout's {venv}"
                    break
            if env.python is not None:
                break
    if env.python is None:
        env.accelerate = shutil.which("accelerate")
        env.python_from = "accelerate on PATH"
        if env.accelerate is None:
            raise EvidenceError(f"no Python for kohya: {dir_} has no venv/ or .venv/ and there is no `accelerate` "
                                "on PATH; give --python PATH/TO/python (or set LORA_AUDIT_KOHYA_PYTHON) of the "
                                "environment where sd-scripts' requirements are installed")


def _executable(value: str) -> Path:
    """A Python given by name (``python3``) is looked up on PATH; a path is made absolute (the runners run in
    their variant folders) but not resolved: a venv's python is a symlink whose venv is the point."""
    if os.sep not in value and "/" not in value:
        found = shutil.which(value)
        if found:
            return Path(found)
    return Path(value).absolute()


def check(env: KohyaEnv, timeout: float = CHECK_TIMEOUT) -> None:
    """``PY -c "import accelerate, torch"`` in the Python the runners will use: one EvidenceError otherwise."""
    python = env.python
    if python is None:
        python = _interpreter(Path(env.accelerate)) if env.accelerate else None
        if python is None:  # accelerate is there, but not a Python script we can read (a wrapper): trust it
            return
    where = f"{python} ({env.python_from})"
    if not python.is_file():
        raise EvidenceError(f"kohya Python {where} does not exist; give --python PATH/TO/python of the environment "
                            "where sd-scripts' requirements are installed")
    try:
        res = subprocess.run([str(python), "-c", "import accelerate, torch"], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL, cwd=env.sd_scripts)
    except subprocess.TimeoutExpired:
        raise EvidenceError(f"kohya Python {where}: `import accelerate, torch` took over {timeout:.0f} s") from None
    except OSError as e:
        raise EvidenceError(f"kohya Python {where} cannot run: {e.strerror or e}") from None
    if res.returncode != 0:
        lines = [ln.strip() for ln in (res.stderr or res.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {res.returncode}"
        raise EvidenceError(f"kohya Python {where} cannot `import accelerate, torch`: {last}; install sd-scripts' "
                            f"requirements in it (cd {env.sd_scripts} && pip install torch torchvision && "
                            "pip install -r requirements.txt)")


def _interpreter(script: Path) -> Path | None:
    """The Python of a console script (``#!/path/to/python``), when it is one."""
    try:
        with open(script, "rb") as f:
            first = f.readline(4096).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    if Path(words[0]).name == "env" and len(words) > 1:
        if "python" not in words[-1]:
            return None
        found = shutil.which(words[-1])
        return Path(found) if found else None
    return Path(words[0]) if "python" in Path(words[0]).name else None
