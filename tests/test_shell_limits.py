"""What bounds a script reader's time and memory: the launches kept from one file, the command line a program can be
started with (ARG_MAX, Windows' 32,767 characters), the notes kept on one command, and the commands loops and
function calls run again. Each limit gives what kohya's user would see: one line, or a note naming the line."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.cli import main
from lora_audit.evidence._script import ARG_MAX, MAX_LAUNCHES, WINDOWS_COMMAND_LINE
from lora_audit.evidence.shell import parse_shell

LAUNCH = {".sh": "python train_network.py --seed {i}\n", ".bat": "python train_network.py --seed {i}\r\n",
          ".ps1": "python train_network.py --seed {i}\n"}


def messages(ev) -> str:
    return "\n".join(w.message for w in ev.warnings)


@pytest.mark.parametrize("suffix", list(LAUNCH))
def test_more_launches_than_the_cap_is_one_line(tmp_path, suffix):
    ok = tmp_path / f"ok{suffix}"
    ok.write_text("".join(LAUNCH[suffix].format(i=i) for i in range(MAX_LAUNCHES)), newline="")
    assert len(parse_shell(ok)) == MAX_LAUNCHES
    over = tmp_path / f"over{suffix}"
    over.write_text("".join(LAUNCH[suffix].format(i=i) for i in range(MAX_LAUNCHES + 1)), newline="")
    r = CliRunner().invoke(main, ["inspect", str(over)])
    assert r.exit_code == 2
    assert r.output.startswith(f"error: {over}:{MAX_LAUNCHES + 1}: more than {MAX_LAUNCHES} training commands")
    assert r.output.count("\n") == 1 and "Traceback" not in r.output


def test_a_value_grown_past_arg_max_is_kept_as_unknown(tmp_path):
    big = "x" * (ARG_MAX // 2 + 10)
    p = tmp_path / "train.sh"
    p.write_text(f"A={big}\nA+=$A\nA+=more\npython train_network.py --network_dim 8 --output_name $A\n")
    (ev,) = parse_shell(p)
    out = {s.name: s for s in ev.settings}
    assert out["network_dim"].value == 8
    assert out["output_name"].origin == "unknown" and out["output_name"].value == "${A}"
    assert f"$A grows past {ARG_MAX:,} characters (ARG_MAX)" in messages(ev)


def test_a_training_command_longer_than_arg_max_is_one_line(tmp_path):
    half = "y" * (ARG_MAX // 2 + 10)
    p = tmp_path / "train.sh"
    p.write_text(f"A={half}\necho $A $A\npython train_network.py --output_name $A --output_dir $A\n")
    r = CliRunner().invoke(main, ["inspect", str(p)])
    assert r.exit_code == 2
    assert r.output.startswith(f"error: {p}:3: the command is longer than ARG_MAX")
    assert "Argument list too long" in r.output and r.output.count("\n") == 1


@pytest.mark.slow
def test_a_training_command_written_over_more_than_arg_max_is_one_line(tmp_path):
    p = tmp_path / "train.sh"
    p.write_text("python train_network.py \\\n" + "  --seed 1 \\\n" * (ARG_MAX // 9 + 10) + "  --network_dim 8\n")
    r = CliRunner().invoke(main, ["inspect", str(p)])
    assert r.exit_code == 2 and r.output.startswith(f"error: {p}:1: the command is longer than ARG_MAX")


def test_a_powershell_list_past_the_windows_command_line_is_unknown(tmp_path):
    p = tmp_path / "train.ps1"
    adds = WINDOWS_COMMAND_LINE // len("--seed=1 ") + 10
    p.write_text("$a = [System.Collections.ArrayList]::new()\n" + '[void]$a.Add("--seed=1")\n' * adds
                 + "python train_network.py --network_dim 4 $a\n")
    (ev,) = parse_shell(p)
    assert {s.name: s.value for s in ev.settings} == {"network_dim": 4}  # no --seed read from the dropped list
    assert f"the list grows past {WINDOWS_COMMAND_LINE:,} characters" in messages(ev)
    assert "$a is only known at run time" in messages(ev)


def test_notes_on_single_arguments_are_capped_and_counted(tmp_path):
    p = tmp_path / "train.sh"
    p.write_text("python train_network.py \\\n" + "  --seed 1 \\\n" * 250 + "  stray\n")
    (ev,) = parse_shell(p)
    assert len(ev.warnings) == 101  # 249 "given twice" and one stray argument: the first 100 notes, and the count
    assert "stray argument 'stray'" in ev.warnings[0].message and "--seed given twice" in ev.warnings[99].message
    assert ev.warnings[-1].message.startswith("150 more notes on single arguments of this command are not shown")
    assert {s.name: s.value for s in ev.settings} == {"seed": 1}


def test_nested_loops_and_calls_finish(tmp_path):
    """Four nested loops of 100 values (10**8 runs of the body) and a function calling another four times, 16 deep
    (4**16 calls): read in bounded time, the command after them still read."""
    values = " ".join(str(i) for i in range(100))
    loops = "".join(f"for v{k} in {values}; do\n" for k in range(4)) + "X=1\n" + "done\n" * 4
    calls = "f0() { Y=1; }\n" + "".join(f"f{k}() {{ f{k - 1}; f{k - 1}; f{k - 1}; f{k - 1}; }}\n" for k in range(1, 17))
    p = tmp_path / "train.sh"
    p.write_text(loops + calls + "f16\nDIM=8\npython train_network.py --network_dim $DIM\n")
    (ev,) = parse_shell(p)
    assert {s.name: s.value for s in ev.settings} == {"network_dim": 8}


def test_a_loop_within_the_budget_still_runs_every_value(tmp_path):
    p = tmp_path / "train.sh"
    p.write_text("ARGS=()\nfor d in 4 8 16; do ARGS+=(--network_dim $d); done\n"
                 "python train_network.py \"${ARGS[@]}\"\n")
    (ev,) = parse_shell(p)
    assert {s.name: s.value for s in ev.settings} == {"network_dim": 16}
    assert "--network_dim given twice" in messages(ev)


def test_commands_that_launch_nothing_are_not_expanded(tmp_path):
    """`echo $UNSET` says nothing (the command is no launch); the same variable in the training command is noted."""
    p = tmp_path / "train.sh"
    p.write_text("mkdir -p $OUT\ncp a $OUT2/b\npython train_network.py --output_dir $OUT\n")
    (ev,) = parse_shell(p)
    text = messages(ev)
    assert "$OUT is not set in the script" in text and "$OUT2" not in text


def test_a_command_with_an_assigning_expansion_is_still_run(tmp_path):
    p = tmp_path / "train.sh"
    p.write_text("touch ${OUT:=/data/out}/x\npython train_network.py --output_dir $OUT\n")
    (ev,) = parse_shell(p)
    assert {s.name: s.value for s in ev.settings} == {"output_dir": "/data/out"}


def test_the_benchmark_shapes_read(tmp_path):
    """Every shape the benchmark times reads (small): the benchmark measures working readers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_shell", Path(__file__).parent.parent / "benchmarks"
                                                  / "bench_shell.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for shape in bench.SHAPES:
        if shape == "launches":
            continue  # at its size it stops at the cap (tested above)
        evs = parse_shell(bench.write(tmp_path, shape, 0.02))
        assert len(evs) >= 1, shape
