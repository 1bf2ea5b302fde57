"""The command-name test reads only the first word of an expanded command name (``first_field``): it must be the
first word ``split_fields`` gives, for any expanded pieces; and a script whose command name comes from variables
launches (or not) exactly as written."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lora_audit.evidence._bash_values import BREAK, RT, SPLIT, first_field, split_fields
from lora_audit.evidence.shell import parse_shell_text

_TEXT = st.text(alphabet=" \t\nab=/.", max_size=6)
_FLAGS = st.sampled_from([0, SPLIT, RT, BREAK, RT | SPLIT, 0, SPLIT])
_PIECES = st.lists(st.tuples(_TEXT, st.integers(1, 3), _FLAGS), max_size=6)


@settings(max_examples=3000, deadline=None)
@given(_PIECES)
def test_first_field_is_the_first_word_split_fields_gives(pieces: list[tuple[str, int, int]]) -> None:
    words = split_fields(pieces, 1, keep_empty=False)
    assert first_field(pieces) == (words[0].text if words else None)


def test_a_command_name_built_from_variables_is_read_as_bash_splits_it() -> None:
    script = ('P="accelerate launch"; T=train_network.py\n'
              '$P $T --seed 1\n'  # first word "accelerate": a training command
              'A$P $T --seed 2\n'  # first word "Aaccelerate": not one
              'E=""; $E"" python $T --seed 3\n')  # first word "": bash runs "" (not python)
    got = parse_shell_text(script, "t.sh")
    assert [[(s.name, s.value, s.source) for s in ev.settings] for ev in got] == [[("seed", 1, "t.sh:2")]]
    assert got[0].facts["launcher"] == "accelerate launch"
