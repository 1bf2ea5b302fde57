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
from lora_audit.evidence import _bash_fast
from lora_audit.evidence._bash import BashTokenizer
from lora_audit.evidence._bash_parse import AndOr, If, Simple
from lora_audit.evidence.shell import parse_shell_text

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
    slots = getattr(type(x), "__slots__", None)
    if slots is None or isinstance(x, (str, int)):
        return x
    return (type(x).__name__, {k: _dump(getattr(x, k)) for k in slots})


@settings(max_examples=300, deadline=None)
@given(_line)
def test_a_template_moved_to_another_line_is_what_that_line_splits_into(line: str) -> None:
    """_moved copies a fast line's nodes to another line exactly: the same tree split_line builds there."""
    line = line.replace("\n", " ").replace("\r", " ")
    here = _bash_fast.split_line(line, 3)
    if here is None:
        return
    moved = [_bash_fast._moved(n, 11) for n in here]
    assert _dump(moved) == _dump(_bash_fast.split_line(line, 11))
    assert _dump(here) == _dump(_bash_fast.split_line(line, 3))  # the template itself is left as it was


def test_repeated_lines_keep_their_own_line_numbers() -> None:
    text = 'V="value $W"; A$V=1\n' * 3 + 'accelerate launch train_network.py --output_name "$V"\n'
    (cmd,) = BashTokenizer("t.sh").commands(text)
    assert [n.source for n in cmd.notes if "$W" in n.message] == ["t.sh:3"]
    assert cmd.variables[0]["defined"] == "t.sh:3"
