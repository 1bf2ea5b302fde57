"""The README's examples are run: every command line of its ```bash/```sh/```console blocks and every ```python
block, as written, in a sandbox folder (a copy of runs/examples; ``/tmp/`` paths moved into the sandbox).

Light commands (inspect, diff, audit, ablate, bisect, ...) go through click's CliRunner, one block per test; the
blocks that train or generate (make-tiny-model, train, compare, and what reads their outputs) run in README order on
the tiny models they make themselves (slow). A command that cannot run here (a Slurm cluster, a GPU, a real
sd-scripts checkout, the network, a server that waits for a browser) is in ``NOT_RUN`` with the reason; a README
command that is neither run nor listed there fails ``test_every_readme_command_is_run_or_listed``.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

SHELL_LANGS = {"bash", "sh", "shell", "console"}
# commands that train, generate images or need torch: run in the slow chain, in README order
HEAVY = {"make-tiny-model", "make-toy-dataset", "train", "compare"}
# python blocks using these run in the slow chain too (they need torch or the chain's tiny models)
HEAVY_PYTHON = re.compile(r"\b(run_comparison|make_tiny_model|make_toy_dataset|train_lora|compare)\s*\(")

# README command lines not run here, by their start (whitespace collapsed, comments removed), and why. An entry
# ending in "$" must match the whole line.
NOT_RUN: dict[str, str] = {
    "python3 -m venv .venv && . .venv/bin/activate": "sets up the developer's venv; .ci/run does it in a fresh one",
    "pip install torch==2.13.0": ".ci/run installs it (the README's pinned CPU wheel)",
    "pip install -e '.[ml,test]'": ".ci/run installs it",
    "lora-audit vote /tmp/cmp$": "serves the voting page until stopped (tests/votes/test_server.py and "
                                 "test_browser.py drive the page)",
    "git clone https://github.com/kohya-ss/sd-scripts": "network: a clone of sd-scripts",
    "python3 -m venv venv && . venv/bin/activate": "sd-scripts' own environment (network, GPU build of torch)",
    "pip install torch torchvision": "sd-scripts' own environment (network, GPU build of torch)",
    "pip install -r requirements.txt": "sd-scripts' own environment (network)",
    "accelerate config": "interactive accelerate setup of a GPU machine",
    "lora-audit launch runs/<study> --sd-scripts ~/sd-scripts": "needs a real sd-scripts checkout and its Python "
                                                                 "(tests marked kohya; tests/test_launch_kohya_env.py)",
    "lora-audit launch runs/<study> --executor slurm": "needs a Slurm cluster (tests/slurm/ starts a one-node one)",
    "lora-audit status runs/<study> --watch": "follows a Slurm study until stopped (tests/slurm/)",
    "lora-audit launch runs/<study> --cancel": "cancels a Slurm study's jobs (tests/slurm/)",
    "python -m pytest": "the test suite itself (.ci/run runs it)",
    "git submodule update --init sd-scripts": "network: fetches the sd-scripts submodule",
    "python -m lora_audit.kohya.gen_catalog sd-scripts": "needs the sd-scripts submodule checked out; "
                                                         "tests/test_catalog.py and tests/test_gen_catalog_commit.py "
                                                         "run the generator on small trees",
}


@dataclass
class Block:
    lang: str
    line: int  # README line of the opening fence
    text: str

    @property
    def id(self) -> str:
        return f"README.md:{self.line}"


@dataclass
class Command:
    block: Block
    line: int
    text: str  # continuation lines joined, comment removed, whitespace collapsed
    args: list[str] | None  # the arguments after `lora-audit`, None for any other program

    @property
    def where(self) -> str:
        return f"README.md:{self.line}: {self.text}"


def fenced_blocks(markdown: str) -> list[Block]:
    """Fenced code blocks as CommonMark reads them: an opening fence is a line of 3+ backticks (up to 3 spaces
    in) and an info string without backticks; the block ends at a fence at least as long."""
    blocks, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^ {0,3}(`{3,})([^`]*)$", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), (m.group(2).strip().split() or [""])[0].lower()
        start, i = i, i + 1
        body = []
        while i < len(lines) and not re.match(rf"^ {{0,3}}{fence}`*\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        blocks.append(Block(lang, start + 1, "\n".join(body)))
        i += 1
    return blocks


def commands(block: Block) -> list[Command]:
    out: list[Command] = []
    lines = block.text.splitlines()
    n = 0
    while n < len(lines):
        first, text = n, lines[n]
        while text.endswith("\\") and n + 1 < len(lines):  # a continued line
            n += 1
            text = text[:-1] + " " + lines[n].strip()
        n += 1
        if block.lang == "console":  # `$ command`, the rest is output
            if not text.lstrip().startswith("$ "):
                continue
            text = text.lstrip()[2:]
        words = shlex.split(text, comments=True)
        if not words:
            continue
        shown = re.sub(r"\s+", " ", _strip_comment(text)).strip()
        args = words[1:] if words[0] == "lora-audit" and not _shell_syntax(text) else None
        out.append(Command(block, block.line + 1 + first, shown, args))
    return out


def _strip_comment(line: str) -> str:
    """The line up to a `#` that starts a comment (outside quotes, after whitespace), as written."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def _shell_syntax(line: str) -> bool:
    """Does the line need a shell (a pipe, a list, a redirection, a substitution)? CliRunner runs one command."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return any(set(tok) <= set("&|;<>()") for tok in lexer) or "$(" in line or "`" in line


def not_run_reason(cmd: Command) -> str | None:
    for key, reason in NOT_RUN.items():
        if key.endswith("$") and cmd.text == key[:-1] or not key.endswith("$") and cmd.text.startswith(key):
            return reason
    return None


def runnable(cmd: Command) -> bool:
    return not_run_reason(cmd) is None and cmd.args is not None and not any(
        mark in w for w in cmd.args for mark in ("<", "~", "[", "..."))


BLOCKS = fenced_blocks(README.read_text(encoding="utf-8"))
SHELL = [b for b in BLOCKS if b.lang in SHELL_LANGS]
PYTHON = [b for b in BLOCKS if b.lang in ("python", "py", "pycon")]


def _heavy(block: Block) -> bool:
    if block.lang in SHELL_LANGS:
        return any(c.args and c.args[0] in HEAVY for c in commands(block) if runnable(c))
    return bool(HEAVY_PYTHON.search(block.text))


LIGHT = [b for b in SHELL + PYTHON if not _heavy(b)]
HEAVY_BLOCKS = [b for b in BLOCKS if b in SHELL + PYTHON and _heavy(b)]


# -- running ------------------------------------------------------------------------------------------------------
def sandbox(root: Path) -> Path:
    """A folder laid out as the repository's top level for the examples: runs/examples (copied: commands write
    studies next to it) and an empty reports/."""
    shutil.copytree(ROOT / "runs" / "examples", root / "runs" / "examples")
    shutil.copytree(ROOT / "reports" / "examples", root / "reports" / "examples")
    (root / "tmp").mkdir()
    return root


def _local(arg: str, root: Path) -> str:
    """``/tmp/x`` (and ``--opt=/tmp/x``) in the sandbox's tmp/ instead: tests never share /tmp paths."""
    return re.sub(r"(^|=)/tmp/", lambda m: f"{m.group(1)}{root}/tmp/", arg)


def run_command(cmd: Command, root: Path) -> None:
    assert cmd.args is not None
    args = [_local(a, root) for a in cmd.args]
    result = CliRunner().invoke(main, args, catch_exceptions=True)
    detail = result.output[-3000:]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback
        detail += "".join(traceback.format_exception(result.exception))[-3000:]
    assert result.exit_code == 0, f"{cmd.where}\nexit code {result.exit_code}\n{detail}"
    # what the command says it writes is there
    for opt in ("--out", "--single-file"):
        if opt in args:
            target = Path(args[args.index(opt) + 1])
            assert (target if target.is_absolute() else root / target).exists(), f"{cmd.where}: no {target}"
    if args[0] == "audit" and "--out" not in args and "--json" not in args:
        assert any((root / "reports").glob("*.md")), f"{cmd.where}: no report in reports/"


def run_python(block: Block, root: Path) -> None:
    code = _local_text(block.text, root)
    namespace = {"__name__": "__readme__"}
    try:
        exec(compile(code, block.id, "exec"), namespace)  # noqa: S102 - the README's own example, run as written
    except SystemExit as e:  # pragma: no cover - reported as a failure
        pytest.fail(f"{block.id}: SystemExit({e.code})")


def _local_text(text: str, root: Path) -> str:
    return re.sub(r"(?<![\w/.])/tmp/", f"{root}/tmp/", text)


def run_block(block: Block, root: Path) -> int:
    if block.lang in SHELL_LANGS:
        ran = 0
        for cmd in commands(block):
            if runnable(cmd):
                run_command(cmd, root)
                ran += 1
        return ran
    run_python(block, root)
    return 1


@pytest.mark.parametrize("block", LIGHT, ids=[b.id for b in LIGHT])
def test_readme_block_runs(block, tmp_path, monkeypatch):
    root = sandbox(tmp_path)
    monkeypatch.chdir(root)
    ran = run_block(block, root)
    runnable_here = [c for c in commands(block) if runnable(c)] if block.lang in SHELL_LANGS else [block]
    assert ran == len(runnable_here)


@pytest.mark.slow
def test_readme_heavy_blocks_run_in_order_on_tiny_models(tmp_path, monkeypatch):
    """make-tiny-model, the toy dataset, train, inspect, compare, vote --judge, stats, export: the README's whole
    loop as written, each block after the ones before it (later blocks read what earlier ones wrote)."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    root = sandbox(tmp_path)
    monkeypatch.chdir(root)
    for block in HEAVY_BLOCKS:
        run_block(block, root)
    # the loop made a LoRA and compared it: the files the README names exist
    assert (root / "tmp" / "toy" / "output" / "pixelpunk.safetensors").exists()
    assert (root / "tmp" / "cmp" / "results.csv").exists()


# -- what is run, what is not -------------------------------------------------------------------------------------
def test_every_readme_command_is_run_or_listed():
    """A README command line is run by the tests above, or NOT_RUN says why not; NOT_RUN names no line that is
    gone from the README."""
    problems, used = [], set()
    for block in SHELL:
        for cmd in commands(block):
            if runnable(cmd):
                continue
            reason = not_run_reason(cmd)
            if reason is None:
                problems.append(f"{cmd.where}: neither run (placeholder, shell syntax or not lora-audit) nor in "
                                "NOT_RUN with a reason")
            used.update(k for k in NOT_RUN if (cmd.text == k[:-1] if k.endswith("$") else cmd.text.startswith(k)))
    problems += [f"NOT_RUN entry matches no README command: {k!r}" for k in NOT_RUN if k not in used]
    assert not problems, "\n".join(problems)


def test_readme_examples_exist_in_the_repository():
    """Paths of this repository the README names (runs/examples/..., reports/examples/..., templates/...,
    lora_audit/..., tests/..., benchmarks/...) are there."""
    text = README.read_text(encoding="utf-8")
    missing = set()
    for m in re.finditer(r"(?<![\w/.<-])((?:runs/examples|reports/examples|templates|lora_audit|tests|benchmarks)"
                         r"(?:/[\w.-]+)+/?)", text):
        path = m.group(1).rstrip(".")
        if not (ROOT / path).exists():
            missing.add(path)
    assert not missing, sorted(missing)


def test_readme_parser_reads_fences_continuations_and_comments():
    md = ("text\n```bash\nlora-audit diff a b \\\n    --all   # compare\necho 'x # y'\n```\n"
          "```json block or `<pre>` is prose, not a fence\n"
          "```console\n$ lora-audit inspect r\noutput line\n```\n")
    blocks = fenced_blocks(md)
    assert [(b.lang, b.line) for b in blocks] == [("bash", 2), ("console", 8)]
    bash = commands(blocks[0])
    assert [(c.line, c.text, c.args) for c in bash] == [
        (3, "lora-audit diff a b --all", ["diff", "a", "b", "--all"]), (5, "echo 'x # y'", None)]
    assert [c.args for c in commands(blocks[1])] == [["inspect", "r"]]
    assert len(SHELL) >= 5 and any(c.args == ["audit", "runs/examples/bespoke-punks"] for b in SHELL
                                   for c in commands(b))
