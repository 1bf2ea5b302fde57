"""The executor's shortcuts give what its general path gives.

``_bash_cond.evaluate`` answers the common test forms (``[ X ]``, ``[ -f X ]``, ``[ A = B ]``) without the parser:
on every small argument list it must give what ``_bash_cond.parse`` gives.
"""

from __future__ import annotations

from itertools import product

from hypothesis import given, settings
from hypothesis import strategies as st

from lora_audit.evidence._bash_cond import evaluate, parse

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
