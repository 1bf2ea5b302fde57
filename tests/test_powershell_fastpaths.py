"""The .ps1 reader's shortcuts for its common statements give exactly what its general reading gives.

``Expressions.fast`` switches them (``[void]$a.Add("text")`` without the argument loop, ``$x = "v $y"`` without the
expression loop, a double-quoted item read first, one newline between statements without the skipping loop). Scripts
drawn from a grammar of those statements and of the ones next to them that must not take a shortcut (escapes,
doubled quotes, concatenation, lists, comments, continuations, blocks, if/else, unterminated strings) are read with
the shortcuts on and off: the commands (words, lines, notes, variables), the variables left, the errors and the
evidence must be the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lora_audit.errors import EvidenceError
from lora_audit.evidence._powershell import PowerShellTokenizer
from lora_audit.evidence._powershell_expr import Expressions
from lora_audit.evidence.shell import parse_shell_text

_STATEMENTS = [
    '[void]$a.Add("--seed=1")', '[void]$a.Add("")', '[void]$a.Add("--s=$y")', '[void]$a.Add("a`tb")',
    '[void]$a.Add("a""b")', '[void]$a.Add("a", "b")', '[void]$a.Add("--s" + "t")', '[void]$a.Add( "--s" )',
    '[void]$a.Add("x") | Out-Null', '[void]$a.Add("x") # c', '$null = $a.AddRange(@("--p", "--q"))',
    '[void]$b.Add("--z")', '[void]\n$a.Add("--n")', "[void]$a.Add('--lit')", '[void]$a.Add("--open',
    '$x = "v $y"', '$x = "v $y" # c', '$x = "v $y";', '$x = "v $y" + "w"', '$x = "v $y", "w"', '$x = "v $y" `\n',
    '$x = "v `"$y`" $env:HOME"', '$x = "v $(Get-Date)"', '$x = "v ${y}"', '$x += " more"', '$x = "v $y"  ',
    '$x = "v', '$X = "V $Y"', '$x="v $y"', '$x = "a" -f 1', '$y = 3', '$y = "3"', '$e = $true', '$z = $x',
    '$a = [System.Collections.ArrayList]::new()', '$env:FOO = "v $y"', "$x = 'v $y'", '$x = "v ""q"" $y"',
    "# comment", "<# block #>", "", "  ", ";", "&& echo", "|| echo", "`", "}", "{", ") stray",
    'if ($y -eq 3) {\n[void]$a.Add("--if")\n} else {\n$x = "else $y"\n}', 'if ($u) { $x = "u" }',
    "python train_network.py $a --out $x", 'python train_network.py @a "$x"', "accelerate launch train_network.py $a",
]


def _dump(text: str) -> object:
    tok = PowerShellTokenizer("t.ps1")
    try:
        cmds = tok.commands(text)
    except EvidenceError as e:
        return ("error", e.message, e.line)
    out: list[object] = [[([(w.text, w.line, w.runtime) for w in c.words], [(n.message, n.source) for n in c.notes],
                           c.variables, c.error and c.error.message) for c in cmds]]
    out.append(sorted((k, repr(v)) for k, v in tok.vars.items()))
    try:
        out.append([ev.model_dump() for ev in parse_shell_text(text, "t.ps1", "ps1")])
    except EvidenceError as e:
        out.append(("evidence error", e.message, e.line))
    return out


def _both(text: str) -> tuple[object, object]:
    fast = _dump(text)
    Expressions.fast = False
    try:
        general = _dump(text)
    finally:
        Expressions.fast = True
    return fast, general


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_STATEMENTS), max_size=14), st.sampled_from(["\n", "\n\n", ";", "\n  "]),
       st.booleans())
def test_shortcuts_read_as_the_general_reading(statements: list[str], sep: str, launch: bool) -> None:
    text = sep.join(statements + (["python train_network.py $a --x $x"] if launch else []))
    fast, general = _both(text)
    assert fast == general


def test_the_bench_shape_reads_the_same_and_keeps_its_values() -> None:
    text = ('$y = "w"\n$a = [System.Collections.ArrayList]::new()\n'
            + '[void]$a.Add("--seed=1")\n$x = "v $y"\n' * 50 + "python train_network.py $a $x\n")
    fast, general = _both(text)
    assert fast == general
    [cmd] = PowerShellTokenizer("t.ps1").commands(text)
    assert [w.text for w in cmd.words] == ["python", "train_network.py"] + ["--seed=1"] * 50 + ["v w"]
    assert (cmd.words[2].line, cmd.words[-1].line) == (3, 102)  # each value keeps the line that set it (the last $x)
