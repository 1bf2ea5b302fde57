"""The .bat reader's shortcuts for its common lines give exactly what the general code gives.

``_batch._continues_unquoted`` (does a line without quotes end in a continuing ``^``?) is compared with
``_continues``, cmd's character-by-character reading; ``_batch._arith`` (``set /a N=N+1`` counted without Python's
parser) with ``_script.arith`` on expressions of the fast shape and near it (keywords, leading zeros, long numbers,
spaces), over values that are numbers, blanks or not numbers at all. A read of a script through the reader is
checked against values worked out by hand, so the shortcuts are seen in use."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from lora_audit.evidence import _batch
from lora_audit.evidence._batch import BatchTokenizer
from lora_audit.evidence._script import arith
from lora_audit.evidence.shell import parse_shell_text


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="^ a\t&", max_size=12))
def test_unquoted_caret_end_is_cmds_reading(line: str) -> None:
    assert _batch._continues_unquoted(line) == _batch._continues(line)[0]
    assert _batch._continues(line)[1] is False


_NAMES = ["N", "n", "X_1", "_", "None", "True", "if", "match", "ARGS"]
_NUMBERS = ["0", "1", "7", "01", "00", "123456789012345678", "1234567890123456789", "9" * 5000, "1_0"]
_expr = st.one_of(
    st.builds(lambda a, op, k: f"{a}{op}{k}", st.sampled_from(_NAMES), st.sampled_from("+-*"),
              st.sampled_from(_NUMBERS)),
    st.builds(lambda a, op, k: f"{a} {op} {k}", st.sampled_from(_NAMES), st.sampled_from("+-"),
              st.sampled_from(_NUMBERS)),
    st.builds(lambda k, op, a: f"{k}{op}{a}", st.sampled_from(_NUMBERS), st.sampled_from("+-"),
              st.sampled_from(_NAMES)),
    st.sampled_from(["N", "N+", "+1", "N+1+1", "$N+1", "${N}-2", "N+1)", "Ä+1"]),
)
_value = st.sampled_from(["0", "5", " 12 ", "", "  ", "-3", "x", "1.5", "1_000", "٣", "9" * 5000])
_values = st.builds(lambda n, more: {"N": n, **more}, _value,
                    st.dictionaries(st.sampled_from(["X_1", "_", "ARGS", "MATCH", "NONE"]), _value))


@settings(max_examples=600, deadline=None)
@given(_expr, _values)
@example("N-1", {"N": "5"})
@example("N+" + "9" * 5000, {"N": "5"})
def test_set_a_shortcut_is_arith(expr: str, values: dict[str, str]) -> None:
    def lookup(k: str) -> str | None:
        return values.get(k.upper())

    assert _batch._arith(expr, lookup) == arith(expr, lookup)


def test_the_shortcuts_in_a_read() -> None:
    text = ("set /a N=0\nset /a N=N+1\nset /a N=N+1\nset /a M=N-10\nset ARGS=%N% --seed %M% ^\n  --network_dim 8\n"
            "python train_network.py %ARGS% ^ \n")
    cmds = BatchTokenizer("t.bat").commands(text)
    assert [(w.text, w.line) for w in cmds[0].words] == [
        ("python", 7), ("train_network.py", 7), ("2", 3), ("--seed", 5), ("-8", 4), ("--network_dim", 6), ("8", 6),
        (" ", 7)]  # ^ before a space escapes it: one argument
    [ev] = parse_shell_text(text, "t.bat", "bat")
    assert any("^ followed by spaces" in n.message for n in ev.warnings)
    assert any("%N%" in n.message for n in BatchTokenizer("t.bat").commands("set /a K=Q+1\necho\n"
                                                                             "python train_network.py %N%\n")[0].notes)
