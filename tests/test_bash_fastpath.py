"""The bash reader's fast path for trivial lines (_bash_fast) gives exactly what the general path gives.

Scripts are drawn from a grammar of simple lines (assignments, appends, exports, arrays, comments, plain commands,
references to earlier variables, lines mixed with ones that need the general path) ending in a kohya training
command; each is read with the fast path on and off, and the commands, their notes and variants, and the evidence
must be the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_audit.errors import EvidenceError
from lora_audit.evidence import _bash, _bash_copies, _bash_fast, _bash_templates
from lora_audit.evidence._bash import BashTokenizer
from lora_audit.evidence._bash_lexer import Lexer
from lora_audit.evidence._bash_parse import AndOr, If, Parser, Simple
from lora_audit.evidence._script import Lines
from lora_audit.evidence.shell import parse_shell_text
from lora_audit.model import Note

_NAMES = ["A", "B", "VAR", "OUT", "ARGS"]
_WORDS = ["x", "--seed", "1", "a.toml", "/data/img", "it's", "b#c", "*.png", "~/m", "a=b", "--lr=1e-4"]


def _ref(name: str) -> str:
    return "$" + name


_value = st.one_of(
    st.sampled_from(_WORDS),
    st.builds(lambda w: f'"{w} with space"', st.sampled_from(_WORDS)),
    st.builds(lambda w: f"'{w}'", st.sampled_from(["x y", "$A", "", "a;b"])),
    st.builds(_ref, st.sampled_from(_NAMES + ["UNSET"])),
    st.builds(lambda n, w: f'"{w} ${n}"', st.sampled_from(_NAMES + ["UNSET"]), st.sampled_from(_WORDS)),
    st.builds(lambda n, w: f"{w}${n}x", st.sampled_from(_NAMES), st.sampled_from(["pre", "a/"])),
    st.sampled_from(['""', "''", "", '"$A$B"', "'a'\"b\"c"]),
)
_name = st.sampled_from(_NAMES)
_line = st.one_of(
    st.builds(lambda n, v: f"{n}={v}", _name, _value),
    st.builds(lambda n, v: f"{n}+={v}", _name, _value),
    st.builds(lambda n, v: f"export {n}={v}", _name, _value),
    st.builds(lambda n, a, b: f"{n}+=({a} {b})", _name, _value, _value),
    st.builds(lambda n, a: f"{n}=({a})", _name, _value),
    st.builds(lambda v: f"# comment {v}", _value),
    st.just(""),
    st.just("   "),
    st.builds(lambda a, b: f"mkdir -p {a} {b}", _value, _value),
    st.builds(lambda a: f"echo {a}  # trailing comment", _value),
    st.builds(lambda a, b: f"cp {a} {b}; {b}", _value, _value),
    st.builds(lambda n, v: f"{n}={v} python tag.py {v}", _name, _value),
    st.builds(lambda n, v: f"A{_ref(n)}=1; {n}={v}", _name, _value),
    st.builds(lambda n: f"unset {n}", _name),
    st.builds(lambda n: f"read {n}", _name),
    st.builds(lambda n: f": {n}", _name),
    st.builds(lambda n, v: f'if [ "${n}" = {v} ]; then B=1; else B=2; fi', _name, _value),
    st.builds(lambda n, v, w: f'if [ "${n}" = {v} ]; then ARGS+=(--v2 {w}); elif [ -f a ]; then {n}+=({v}); fi',
              _name, _value, _value),
    st.builds(lambda n, v: f"if true; then {n}={v}; echo x; elif false; then :; else {n}=; fi;", _name, _value),
    st.builds(lambda n, v: f"if [ -n \"${n}\" ] && [ {v} ]; then python train_network.py --w ${n}; fi", _name,
              _value),
    st.builds(lambda n, v: f"{n}=({v} x) cmd {v}; {n}+=() ", _name, _value),
    st.sampled_from(["if a; then b; fi c", "if a; then; b; fi", "then x; fi", "fi", "else", "A=(a (b))"]),
    st.builds(lambda n: f'[ -f x ] && {n}=maybe', _name),
    st.builds(lambda v: f"python train_network.py --x {v}", _value),
    st.builds(lambda v: f"accelerate launch train_network.py --y {v};", _value),
    st.builds(lambda n: f"f() {{ {n}=in_f; }}", _name),
    st.just("f"),
    st.builds(lambda n: f"{_ref(n)} --z", _name),
    st.builds(lambda a, b: f"cd {a} && ls -la | grep {b} > list.txt", _value, _value),
    st.builds(lambda a, n: f"echo {a} >> log.txt 2>&1 || {n}=failed", _value, _name),
    st.builds(lambda n, v: f"true && {n}={v}; false || {n}+={v}", _name, _value),
    st.builds(lambda v: f"grep -q x f && python train_network.py --q {v} | tee log", _value),
    st.builds(lambda n: f"[ -z \"${n}\" ] && {n}=default", _name),
    # random text of the characters that decide between the paths
    st.text(alphabet="ab12=+$#;\r'\" \t{}[]()&|<>\\`!", max_size=16),
)
# the lines are repeated 1 to 3 times: a line met again is read from its template (_bash_fast.runner)
_script = st.builds(
    lambda lines, k, v: "\n".join(lines * k) + f'\naccelerate launch train_network.py --x "$VAR" --o {v} '
                                                '${ARGS[@]}\n',
    st.lists(_line, max_size=12), st.integers(1, 3), _value)


# -- multi-line compound commands (_bash_templates): blocks repeated at other lines are read from templates --------
# An inner statement: its first line is indented, the lines after it (heredoc bodies, continuations) are not.
_stmt = st.one_of(
    st.builds(lambda n, v: f"{n}={v}", _name, _value),
    st.builds(lambda n, v: f"{n}+=({v} x)", _name, _value),
    st.builds(lambda v: f"python train_network.py --a {v}", _value),
    st.builds(lambda n: f'accelerate launch train_network.py --output_name "${n}" --seed=${n}', _name),
    st.builds(lambda n: f'cat > c.toml <<EOF\nlr = "${n}"\nEOF', _name),
    st.builds(lambda n: f"python train_network.py \\\n  --dim ${n} \\\n  --b 2", _name),
    st.builds(lambda n, v: f"[[ -n ${n} && ${n} == {v} ]] && {n}=t", _name, _value),
    st.builds(lambda n: f"true &&\n  {n}=after_and", _name),
    st.sampled_from(["# a comment $A", ":", "f", "g x", "break", "echo a\\ ", "cat <<-'E'\n\tx $B\n\tE",
                     "python train_network.py \\\n# cut\n  --orphan", "unset A", "exit", "echo $(date) ${A:-d}",
                     "echo <<EOF", "{ B=in_group; }", "cat <<EOF\nnever closed", "echo [[ x"]),
)
_cond = st.one_of(st.builds(lambda n, v: f'[ "${n}" = {v} ]', _name, _value),
                  st.sampled_from(["true", "false", "[ -f x ]", "[[ $B == x* ]]", "grep -q a b", "! true"]))
# what follows a block's closing word on its line
_after = st.sampled_from(["", "", "", " && echo ok", " | tee log", " &&\n  B=after", "; echo x", " &", " # c",
                          " || A=2", " > out.txt", ";", " && f", " | cat", " \\\n# cut"])


def _body(stmts: list[str]) -> str:
    return "\n".join("  " + s for s in stmts) if stmts else "  :"


_stmts = st.lists(_stmt, min_size=1, max_size=3)


def _blocks(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    body = st.lists(st.one_of(_stmt, inner), min_size=1, max_size=3).map(_body)
    return st.one_of(
        st.builds(lambda c, b, c2, b2, e, a: f"if {c}; then\n{b}\nelif {c2}; then\n{b2}\nelse\n{e}\nfi{a}",
                  _cond, body, _cond, body, body, _after),
        st.builds(lambda c, b, a: f"if {c}\nthen\n{b}\nfi{a}", _cond, body, _after),
        st.builds(lambda v, b, a: f"for i in {v} 2; do\n{b}\ndone{a}", _value, body, _after),
        st.builds(lambda c, b, a: f"while {c}; do\n{b}\ndone{a}", _cond, body, _after),
        st.builds(lambda n, v, s, b, s2, a: f'case "${n}" in\n  a|{v}) {s} ;;\n  *.png)\n{b}\n    ;;\n'
                                           f"  *) {s2};;\nesac{a}", _name, _value, _stmt, body, _stmt, _after),
        st.builds(lambda b, a: f"{{\n{b}\n}}{a}", body, _after),
        st.builds(lambda b, a: f"(\n{b}\n){a}", body, _after),
        st.builds(lambda b: f"f() {{\n{b}\n}}", body),
        st.builds(lambda b: f"function g {{\n{b}\n}}", body),
    )


_block = st.recursive(_blocks(st.nothing()), _blocks, max_leaves=4)


@st.composite
def _block_script(draw: st.DrawFn) -> str:
    """A few blocks (and simple lines), each used several times at different lines: a sequence of them repeated 3 to
    5 times, each time after a different line (a block is a template from its third time)."""
    pool = draw(st.lists(_block, min_size=1, max_size=3)) + draw(st.lists(_line, max_size=2))
    order = draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=6))
    seps = draw(st.lists(st.one_of(_line, st.just("")), min_size=3, max_size=5))
    v = draw(_value)
    return "".join(sep + "\n" + "\n".join(pool[i] for i in order) + "\n" for sep in seps) + (
        f'accelerate launch train_network.py --x "$VAR" --o {v}\n')


def _read(text: str, fast: bool) -> Any:
    old = _bash_fast.FAST
    _bash_fast.FAST = fast
    try:
        cmds = BashTokenizer("t.sh").commands(text)
        try:
            evidence = [e.model_dump() for e in parse_shell_text(text, Path("t.sh"))]
        except EvidenceError as e:
            evidence = ["error", e.message, e.line]  # type: ignore[list-item]
        return [(c.words, [n.model_dump() for n in c.notes], c.variables, c.variants, c.created, repr(c.error))
                for c in cmds], evidence
    except EvidenceError as e:
        return "error", e.message, e.line
    finally:
        _bash_fast.FAST = old


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_script)
def test_fast_path_reads_as_the_general_path(text: str) -> None:
    assert _read(text, True) == _read(text, False)


@pytest.mark.parametrize("text", [
    'V="value $W"; A$V=1\nEXTRA+=" --seed 1"\nexport OUT=/o\n# c\n\n'
    'accelerate launch train_network.py --output_name "$V" $EXTRA "$OUT"\n',
    "A=1\nA+=2\nB=(x 'y z')\nB+=(\"$A\")\naccelerate launch train_network.py ${B[@]} --a $A\n",
])
def test_fast_path_examples(text: str) -> None:
    fast, general = _read(text, True), _read(text, False)
    assert fast == general
    assert fast[1] and fast[1][0] != "error"  # a training command was found, the same one


def test_fast_path_is_taken_for_trivial_lines() -> None:
    """The fast path reads the line itself (not only defers): blank, comments, assignments, plain commands, lists
    and pipelines of them."""
    nodes = _bash_fast.split_line('A="x $B" C=1; mkdir -p "$OUT/s" # c', 3)
    assert nodes is not None and all(isinstance(n, Simple) for n in nodes)
    simple = [n for n in nodes if isinstance(n, Simple)]
    assert [len(n.words) for n in simple] == [2, 3]
    assert simple[0].words[0].assign == ("A", False) and simple[1].words[0].text == "mkdir"
    nodes = _bash_fast.split_line("cd /d && ls -la | grep png > list.txt 2>&1", 1)
    assert nodes is not None and len(nodes) == 1 and isinstance(nodes[0], AndOr)
    nodes = _bash_fast.split_line('if [ "$V" = x ]; then A+=(--v2); elif [ -f a ]; then B=1; C=2; else D=3; fi', 1)
    assert nodes is not None and isinstance(nodes[0], If) and len(nodes[0].clauses) == 2
    for general in ("a | ", "a &", "a |& b", "x=$(date)", "cat <<EOF", "if x; then y; fi; z", "a\\", "{ a; }",
                    "[[ a ]]", "a ;; b", "echo ${A:-x}", "echo `d`", 'echo > "$F"', "a && ", "! a", "f() { a; }",
                    "a (b)", "if a; then fi", "if a; then if b; then c; fi; fi", "if a; else b; fi", "A=(x)y"):
        assert _bash_fast.split_line(general, 1) is None, general


def test_a_word_the_fast_path_cannot_end_is_refused_at_once() -> None:
    """A long word running into `(` (or an unclosed quote) is handed to the general path without backtracking:
    before the word pattern was atomic, 30 letters and a `(` took a minute, 60 would take years."""
    for line in ("a" * 60 + "(", "a$b" * 2000 + "(", '"' + "a$b" * 2000, "x " + "'" * 3001, "b" * 4000 + "`"):
        assert _bash_fast.split_line(line, 1) is None


def _dump(x: Any) -> Any:
    """A node, word or part as plain data (every slot and field), to compare two trees."""
    if isinstance(x, (list, tuple)):
        return [_dump(v) for v in x]
    if isinstance(x, Note):
        return x.model_dump()
    slots = getattr(type(x), "__slots__", None)
    if slots is None or isinstance(x, (str, int)):
        return x
    return (type(x).__name__, {k: _dump(getattr(x, k)) for k in slots})


@settings(max_examples=300, deadline=None)
@given(_line)
def test_a_template_moved_to_another_line_is_what_that_line_splits_into(line: str) -> None:
    """shifted copies a fast line's nodes to another line exactly: the same tree split_line builds there."""
    line = line.replace("\n", " ").replace("\r", " ")
    here = _bash_fast.split_line(line, 3)
    if here is None:
        return
    moved = [_bash_templates.shifted(n, 11 - 3) for n in here]
    assert _dump(moved) == _dump(_bash_fast.split_line(line, 11))
    assert _dump(here) == _dump(_bash_fast.split_line(line, 3))  # the template itself is left as it was


@settings(max_examples=300, deadline=None)
@given(_line, _line)
def test_a_template_copier_gives_what_the_line_splits_into(line: str, other: str) -> None:
    """The copier written for a template (_bash_copies.copier) builds, at any line, the tree split_line builds
    there, sharing no mutable object with the template nor with its other copies."""
    line = (line + "; " + other).replace("\n", " ").replace("\r", " ")
    here = _bash_fast.split_line(line, 3)
    if here is None:
        return
    copy = _bash_copies.copier(here)
    a, b = copy(11), copy(12)
    assert _dump(a) == _dump(_bash_fast.split_line(line, 11)) and _dump(b) == _dump(_bash_fast.split_line(line, 12))
    assert _dump(here) == _dump(_bash_fast.split_line(line, 3))
    ids = {id(x) for n in here for x in _objects(n)}
    a_ids = {id(x) for n in a for x in _objects(n)}
    assert not ids & a_ids and not a_ids & {id(x) for n in b for x in _objects(n)}


def test_a_copier_holds_no_script_text_in_its_source() -> None:
    """Every value of the script reaches the copier as a global of its namespace, never as source text: a line
    whose words look like Python code is copied as written."""
    line = "X='\")]; import os #' Y=\"__import__('os')\" echo k0 ln \"$ln\" 'None'"
    here = _bash_fast.split_line(line, 2)
    assert here is not None
    assert _dump(_bash_copies.copier(here)(9)) == _dump(_bash_fast.split_line(line, 9))


def _top_nodes(text: str, fast: bool) -> Any:
    """Every top-level node the executor is handed, in order, as plain data (every line number included): from the
    general parser, from fast lines and from templates."""
    seen: list[Any] = []
    real_parser, real_runner = _bash.Parser, _bash_fast.runner

    class Recording(real_parser):  # type: ignore[misc,valid-type]
        def iter_parse(self) -> Any:
            for node in super().iter_parse():
                seen.append(_dump(node))
                yield node

    def runner(lexer: Any, run_node: Any, run_simple: Any) -> Any:
        def node(n: Any) -> Any:
            seen.append(_dump(n))
            return run_node(n)

        def simple(n: Any) -> Any:
            seen.append(_dump(n))
            return run_simple(n)
        return real_runner(lexer, node, simple)

    old = _bash_fast.FAST
    _bash.Parser, _bash_fast.runner, _bash_fast.FAST = Recording, runner, fast  # type: ignore[assignment,misc]
    try:
        BashTokenizer("t.sh").commands(text)
    except EvidenceError as e:  # the general parser may read the failing line before running the one above it
        return ("error", e.message, e.line)
    finally:
        _bash.Parser, _bash_fast.runner, _bash_fast.FAST = real_parser, real_runner, old  # type: ignore[misc]
    return seen


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_block_script())
def test_repeated_blocks_read_as_the_general_path(text: str) -> None:
    """Multi-line compound commands (if/elif/else, loops, case, groups, functions, heredocs, [[ ]], comments,
    continuations, && or | after the block) repeated at other lines: the executor is handed the same nodes, line
    numbers included, and gives the same commands, notes, variants and evidence, with templates on and off."""
    assert _top_nodes(text, True) == _top_nodes(text, False)
    assert _read(text, True) == _read(text, False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_block, st.integers(1, 40))
def test_a_shifted_template_is_what_the_parser_reads_at_that_line(block: str, k: int) -> None:
    """_bash_templates.shifted moves every line number (words, parts, segments, redirections, heredocs, clauses,
    loops, cases, functions) and shares no node: the copy is the tree the parser reads k lines further down."""
    def parse(t: str) -> list[Any]:
        try:
            return Parser(Lexer(t, Lines(t, 1), "t.sh").lines()).parse()
        except EvidenceError:
            return []
    here, there = parse(block + "\n"), parse("\n" * k + block + "\n")
    if not all(_bash_templates._clean(n, 0) for n in here):
        return  # a note names its line in its text: such a tree never becomes a template
    moved = [_bash_templates.shifted(n, k) for n in here]
    assert _dump(moved) == _dump(there)
    assert _dump(here) == _dump(parse(block + "\n"))  # the template is left as it was
    ids = {id(x) for n in here for x in _objects(n)}
    assert not ids & {id(x) for n in moved for x in _objects(n)}


def _objects(x: Any) -> list[Any]:
    """Every mutable object (node, word, part, redirection, heredoc, list) in a tree."""
    if isinstance(x, list):
        return [x, *(o for v in x for o in _objects(v))]
    if isinstance(x, tuple):
        return [o for v in x for o in _objects(v)]
    slots = getattr(type(x), "__slots__", None)
    if slots is None or isinstance(x, (str, int)):
        return []
    return [x, *(o for k in slots for o in _objects(getattr(x, k)))]


@pytest.mark.parametrize("text", [
    ("for i in 1 2; do\n  if [ \"$V\" = \"$i\" ]; then\n    case \"$M\" in\n      a) while [ -f stop ]; "
     "do ARGS+=(--v2); done ;;\n      *) if [ -f x ]; then { EXTRA=\"--clip_skip 2\"; }; elif "
     "[ \"$i\" = 2 ]; then N=$i; fi ;;\n    esac\n  fi\ndone\n") * 5
    + 'accelerate launch train_network.py "${ARGS[@]}" $EXTRA --o "$N"\n',
    'cat > "cfg.toml" <<EOF\n[general]\noutput_name = "$NAME"\nEOF\nNAME=b\n' * 4
    + "accelerate launch train_network.py --config_file cfg.toml\n",
    "f() {\n  A=$1\n}\nf x\n" * 3 + "if [ -n \"$A\" ]; then\n  python train_network.py --a \"$A\"\nfi\n" * 3,
    # a block that leaves the lexer inside `[[` (the next line's `&&` is a word there) is never a template
    "if true; then\n  echo [[ x\nfi\nA=1 && B=2 ]]\n" * 3 + "python train_network.py --a \"$A\" --b \"$B\"\n",
    # the parser reads the line after `&& f` to see whether `f` opens `f()`: the command's span is not a template
    "for i in 1; do\n  A=$i\ndone && f\nB=2\n" * 3 + "python train_network.py --a \"$A\" --b \"$B\"\n",
    # the lexer hands on 1,024 items of a long line at a time: a command ending just before the cut is no span
    ("{ " + "x " * 1020 + "; }; echo hi\n") * 3 + "python train_network.py --a 1\n",
    # a note read after `fi` goes to the next command: the block is not a template
    "if true; then\n  A=1\nfi \\\n# cut\necho x\n" * 3 + "python train_network.py --a \"$A\"\n",
])
def test_repeated_block_examples(text: str) -> None:
    assert _top_nodes(text, True) == _top_nodes(text, False)
    fast = _read(text, True)
    assert fast == _read(text, False)
    assert fast[1] and fast[1][0] != "error"


def test_a_block_met_again_is_not_read_again() -> None:
    """From its third time, a repeated block is a template's copy: the lexer does not read it."""
    block = "for i in 1 2; do\n  if [ \"$V\" = \"$i\" ]; then\n    N=$i\n  fi\ndone\n"
    text = block * 6
    read: list[int] = []
    real = Lexer._other

    def other(self: Lexer) -> Any:
        read.append(self.line_of(self.pos))
        return real(self)
    Lexer._other = other  # type: ignore[method-assign]
    try:
        BashTokenizer("t.sh").commands(text)
    finally:
        Lexer._other = real  # type: ignore[method-assign]
    assert read and max(read) <= 10  # `"$V"` read by the word reader in the first two blocks only


def test_an_unclosed_test_keeps_the_next_lines_on_the_general_path() -> None:
    """After `[[` with no `]]`, the lexer reads `&&` on the next lines as words of the test: no fast line there."""
    text = "[[ a\nA=1 && B=2\nA=1 && B=2\npython train_network.py --x $A $B\n"
    assert _read(text, True) == _read(text, False)
    assert _top_nodes(text, True) == _top_nodes(text, False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_script)
def test_templates_copied_by_their_copiers_read_as_the_general_path(text: str) -> None:
    """With every template given its copier at its first copy, the fast path still reads as the general path."""
    old = _bash_copies.COMPILE_AFTER
    _bash_copies.COMPILE_AFTER = 1
    try:
        assert _read(text, True) == _read(text, False)
    finally:
        _bash_copies.COMPILE_AFTER = old


def test_a_line_met_often_is_copied_by_its_copier() -> None:
    """A line repeated past COMPILE_AFTER copies gets a copier; each repetition keeps its own line number."""
    n = _bash_copies.COMPILE_AFTER + 5
    text = 'V="value $W"; A$V=1\n' * n + 'accelerate launch train_network.py --output_name "$V"\n'
    made: list[int] = []
    real = _bash_copies.copier
    _bash_fast.copier = lambda nodes: made.append(1) or real(nodes)  # type: ignore[assignment]
    try:
        (cmd,) = BashTokenizer("t.sh").commands(text)
    finally:
        _bash_fast.copier = real
    assert made == [1]
    assert [x.source for x in cmd.notes if "$W" in x.message] == [f"t.sh:{n}"]
    assert cmd.variables[0]["defined"] == f"t.sh:{n}"
    assert cmd.words[-1].text == "value $W" and cmd.words[-1].line == n  # the value written at line n


def test_repeated_lines_keep_their_own_line_numbers() -> None:
    text = 'V="value $W"; A$V=1\n' * 3 + 'accelerate launch train_network.py --output_name "$V"\n'
    (cmd,) = BashTokenizer("t.sh").commands(text)
    assert [n.source for n in cmd.notes if "$W" in n.message] == ["t.sh:3"]
    assert cmd.variables[0]["defined"] == "t.sh:3"
