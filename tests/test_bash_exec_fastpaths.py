"""The executor's shortcuts give what its general path gives.

``_bash_cond.evaluate`` answers the common test forms (``[ X ]``, ``[ -f X ]``, ``[ A = B ]``) without the parser:
on every small argument list it must give what ``_bash_cond.parse`` gives. A test's ``"$NAME"`` operand is read
without the word expansion (``_quoted_var``): what both expansions give it. A plain ``$NAME`` is expanded by
``_expand`` itself, without ``_variable``: what ``_variable`` gives it. Past _MAX_FORKS, merges reuse one
unknown value per (name, line): a branch appending to it must not change it for the others.
"""

from __future__ import annotations

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_audit.evidence._bash import _MAX_FORKS, BashTokenizer
from lora_audit.evidence._bash_cond import evaluate, parse
from lora_audit.evidence._bash_expand import _GENERAL, DROPPED
from lora_audit.evidence._bash_lexer import Lexer
from lora_audit.evidence._bash_parse import Parser
from lora_audit.evidence._script import Command, Lines
from lora_audit.evidence.invocation import Token

# the words a test's grammar gives a meaning to, and operands of every kind (empty, numbers, globs, runtime: None)
_WORDS = ["!", "(", ")", "=", "==", "!=", "<", ">", "=~", "-nt", "-eq", "-ne", "-lt", "-ge", "-a", "-o", "&&", "||",
          "-f", "-d", "-z", "-n", "-v", "-q", "-t", "", "x", "a*", "[ab]", "1", "01", "0x1f", " 2 ", "-1", "SET",
          None]
_ARG = st.tuples(st.sampled_from(_WORDS) | st.text(max_size=3), st.booleans())


@settings(max_examples=3000, deadline=None)
@given(st.lists(_ARG, max_size=4), st.booleans(), st.sampled_from([True, False, None]))
def test_evaluate_gives_what_the_parser_gives(args, double, set_answer):
    def is_set(name: str) -> bool | None:
        return set_answer if name == "SET" else False

    assert evaluate(args, double, is_set) == parse(args, double, is_set)


def test_evaluate_gives_what_the_parser_gives_on_every_short_list():
    """Every list of up to three words of a small alphabet, quoted or not (what a random draw rarely meets:
    ``[ ! = ! ]``, ``[ ( = ) ]``)."""
    words = ["!", "(", ")", "=", "-eq", "-a", "-z", "-f", "-q", "", "x", "1", "SET", None]
    args = [(w, q) for w in words for q in (False, True)]

    def is_set(name: str) -> bool:
        return name == "SET"

    for n in range(4):
        for combo in product(args, repeat=n):
            for double in (False, True):
                assert evaluate(list(combo), double, is_set) == parse(list(combo), double, is_set), (combo, double)


def test_the_direct_forms_answer_as_bash_does():
    def never(_: str) -> bool:
        return False

    assert evaluate([("x", True), ("=", False), ("x", False)], False, never) is True
    assert evaluate([("a", False), ("!=", False), ("a", False)], False, never) is False
    assert evaluate([(None, True), ("=", False), ("x", False)], False, never) is None  # runtime operand
    assert evaluate([("abc", False), ("==", False), ("a*", False)], True, never) is True  # [[ ]]: glob
    assert evaluate([("abc", False), ("==", False), ("a*", True)], True, never) is False  # quoted: literal
    assert evaluate([("x", False), ("-eq", False), ("1", False)], False, never) is False  # not an integer
    assert evaluate([("-f", False), ("x", False)], False, never) is None  # a file on the machine
    assert evaluate([("-z", False), ("", True)], False, never) is True
    assert evaluate([("-q", False), ("x", False)], False, never) is False  # unknown operator: an error
    assert evaluate([("", True)], False, never) is False
    assert evaluate([("=", True), ("=", False), ("=", False)], False, never) is True  # quoted: an operand


_STATES = ["", "V=abc", "V=", "V=$(date)", 'V="a b"', "A=()", "A=(x y)", "V=1; V+=$(date)", "read V",
           "if [ -f x ]; then V=1; else V=2; fi", 'V="${U:-d}"', "A=(); A+=(z)"]
_OPERANDS = ['"$V"', '"${V}"', '"$A"', '"$V"x', '""$V', '"$1"', '"${V:-d}"', '"${A[@]}"', "'$V'", "$V", '"$V$V"',
             '"x$V"', '"$U"', '"${A[1]}"']


@pytest.mark.parametrize("state", _STATES)
def test_a_quoted_variable_operand_is_what_both_expansions_give(state):
    bt = BashTokenizer("t.sh")
    bt.commands(state + "\n")
    direct = 0
    for text in _OPERANDS:
        line = f"echo {text}\n"
        (node,) = Parser(Lexer(line, Lines(line, 1), "t.sh").lines()).iter_parse()
        word = node.words[1]  # type: ignore[union-attr]
        got = bt._quoted_var(word)
        if got is _GENERAL:
            continue
        direct += 1
        (tok,) = bt._fields(word, DROPPED)
        assert got == (None if tok.runtime else tok.text), (state, text)
        assert got == bt._string(word), (state, text)
    assert direct  # ("$U" at least): the shortcut is taken


def test_an_unknown_value_reused_by_two_branches_is_not_changed_by_an_append_in_one():
    """Past _MAX_FORKS the function's branch gives $A one unknown value in both arms of the if; the append in the
    else arm leaves the then arm's value as it was, so the arms differ and $A after the if is unknown again."""
    text = ("if [ -f f ]; then :; fi\n" * (_MAX_FORKS + 1) + "f() { if [ -f a ]; then A=1; fi; }\n"
            "if [ -f o ]; then f; else f; A+=x; fi\n"
            'accelerate launch train_network.py --output_name "$A"\n')
    (cmd,) = BashTokenizer("t.sh").commands(text)
    assert [(t.text, t.runtime) for t in cmd.words[-2:]] == [("--output_name", False), ("${A}", True)]


_REFERENCES = ["$V", '"$V"', "$A", '"$A"', "$U", '"$U"', "$1", "$0", "$@", "$*", "$#", "$?", "${V}", "${A[@]}",
               "${A[1]}", '"${A[@]}"', "${U:-d}", "$V$U"]


@pytest.mark.parametrize("positional", [False, True])
@pytest.mark.parametrize("state", [*_STATES, "source ./not-there.sh; W=1"])
def test_a_reference_expands_as_the_variable_reading_gives(state, positional):
    """_expand reads a plain ``$NAME`` (set, unset, conditional) without _variable: the same pieces, notes (kept or
    dropped), variables used and conditional names as _variable gives, in and out of a function's arguments."""
    bt = BashTokenizer("t.sh")
    bt.commands(state + "\n")
    if positional:
        bt._positional = [Token("p1", 4)]
    for text in _REFERENCES:
        line = f"echo {text}\n"
        (node,) = Parser(Lexer(line, Lines(line, 7), "t.sh").lines()).iter_parse()
        for part in node.words[1].parts:  # type: ignore[union-attr]
            if part.kind != "var":
                continue
            for dropped in (False, True):
                got = []
                for read in (lambda p, n, c: bt._expand([p], n, c), bt._variable):
                    bt._used, bt._picks = {}, {}
                    notes, cmd = DROPPED if dropped else [], Command(words=[])
                    pieces = read(part, notes, cmd)
                    got.append((pieces, [n.model_dump() for n in notes], cmd.variables, bt._used))
                assert got[0] == got[1], (state, text, positional)
