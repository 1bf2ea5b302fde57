"""Generated scripts run nothing but kohya: hostile run names, sweep values and paths go through ``ablate`` and
``bisect start``, then every generated runner and the user's edited script is run by bash under stand-in
``accelerate`` and ``python`` that log their argv. Nothing else may run, and every value arrives literally."""

import json
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import tomlkit
from click.testing import CliRunner
from conftest import BAD
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lora_audit.cli import main

CONTROL = [chr(c) for c in range(1, 32)] + ["\x7f"]
META = list("$()`;'\"\\#&|<>*?~!{}[] =%^") + ["$(", "${", "`", "\n", "\r", "\r\n"]


def _payloads(canary: Path) -> list[str]:
    c = shlex.quote(str(canary))
    return [f"$(touch {c})", f"`touch {c}`", f"; touch {c}", f"\ntouch {c}\n", f"\rtouch {c}\r",
            f"'; touch {c}; '", f"\"; touch {c}; \"", f"# x\ntouch {c} #", f"\x00\ntouch {c}", f"&& touch {c} ||"]


def _bin(tmp: Path) -> tuple[Path, Path]:
    """A bin folder whose accelerate and python write each call's argv (NUL-separated) to a file of their own."""
    bindir, calls = tmp / "bin", tmp / "calls"
    bindir.mkdir(exist_ok=True)
    calls.mkdir(exist_ok=True)
    body = ('#!/bin/bash\nf=$(mktemp "$ARGV_DIR/call.XXXXXX")\nprintf "%s\\0" "$(basename "$0")" "$@" > "$f"\n')
    for name in ("accelerate", "python", "python3"):
        (bindir / name).write_text(body)
        (bindir / name).chmod(0o755)
    return bindir, calls


def _run(script: Path, bindir: Path, calls: Path) -> list[list[str]]:
    for f in calls.iterdir():
        f.unlink()
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "ARGV_DIR": str(calls), "LORA_AUDIT_PYTHON": "python"}
    res = subprocess.run(["bash", script.name], cwd=script.parent, capture_output=True, env=env, timeout=60)
    assert res.returncode == 0, (script, res.stderr.decode(errors="replace"))
    return [f.read_bytes().decode("utf-8", "surrogateescape").split("\0")[:-1] for f in sorted(calls.iterdir())]


def _script_run(root: Path, folder: str, output_name: str) -> Path:
    """A run whose evidence is the user's own train.sh (launcher options and all)."""
    d = root / folder
    d.mkdir()
    (d / "train.sh").write_text(
        "#!/usr/bin/env bash\n"
        "# my training script\n"
        "accelerate launch --num_cpu_threads_per_process 1 train_network.py \\\n"
        "  --pretrained_model_name_or_path=runwayml/stable-diffusion-v1-5 \\\n"
        "  --train_data_dir=img \\\n"
        "  --network_module=networks.lora \\\n"
        "  --network_dim=32 \\\n"
        "  --network_alpha=16 \\\n"
        "  --resolution=512,512 \\\n"
        "  --train_batch_size=4 \\\n"
        "  --max_train_epochs=10 \\\n"
        f"  --output_name={shlex.quote(output_name)} \\\n"
        "  --learning_rate=1e-4\n")
    return d


def _named(d: Path, name: str, verdict: str) -> Path:
    """The run named ``name``: by its folder (a folder name holds anything but '/' and NUL), with the verdict in
    run.toml. (run.toml's ``name`` is checked by its reader; a folder name is what reaches the files.)"""
    (d / "run.toml").write_text(tomlkit.dumps({"verdict": verdict}))
    target = d.with_name(name)
    d.rename(target)
    return target


def _check_study(study: Path, bindir: Path, calls: Path, canary: Path, sd: str | None,
                 sweep: tuple[str, str] | None = None) -> int:
    """Run every runner and every edited script of ``study``; returns how many scripts ran."""
    ran = 0
    for record_file in sorted(study.glob("*/variant.json")):
        folder = record_file.parent
        record = json.loads(record_file.read_text())
        runner = folder / record["runner"]
        assert record["runner"] == "lora-audit-run.sh" and runner.is_file()
        argvs = _run(runner, bindir, calls)
        ran += 1
        assert len(argvs) == 1, argvs
        argv = argvs[0]
        if argv[0] == "accelerate":
            # a relative sd-scripts path is relative to the variant folder (the runner runs in the run's folder)
            word = f"{sd}/{record['script']}" if sd.startswith("/") else f"{folder.resolve()}/{sd}/{record['script']}"
            assert argv[1] == "launch" and word in argv, argv
            i = argv.index(word)
            assert argv[2:i] == ["--num_cpu_threads_per_process", "1"]  # the launcher options the user wrote
            assert argv[i + 1:i + 3] == ["--config_file", f"{folder.resolve()}/config.toml"]
        else:
            assert argv[:3] == ["python", "-m", "lora_audit.train"], argv
        assert not canary.exists(), runner
        cfg = tomllib.loads((folder / "config.toml").read_text())  # every config parses
        if record["edited_script"]:
            edited = folder / record["edited_script"]
            assert record["edited_script"] == "train.sh"  # the user's script keeps its name, never clobbered
            argvs = _run(edited, bindir, calls)
            ran += 1
            assert len(argvs) == 1 and argvs[0][:4] == ["accelerate", "launch", "--num_cpu_threads_per_process",
                                                        "1"], argvs
            args = argvs[0]
            assert f"--output_name={cfg.get('output_name')}" in args, (args, cfg.get("output_name"))
            if sweep and record["id"].startswith("sweep-"):
                assert f"--{sweep[0]}={cfg[sweep[0]]}" in args and cfg[sweep[0]] in sweep[1:], args
            assert not canary.exists(), edited
    return ran


def _ablate_and_run(tmp: Path, good_name: str, bad_name: str, sweep_value: str, sd_name: str, backend="kohya"):
    canary = tmp / "CANARY"
    good_name, bad_name = (n.replace("/", "").replace("\x00", "") for n in (good_name, bad_name))
    good = _script_run(tmp, "good", "my lora $(touch " + str(canary) + ") `touch x`; #")
    good = _named(good, "g" + good_name, "good")
    bad = tmp / "bad"
    bad.mkdir()
    (bad / "config.toml").write_text(BAD)
    bad = _named(bad, "b" + bad_name, "bad")
    sd = str(tmp / sd_name)
    study = tmp / "study"
    sweep = f"caption_extension=a{sweep_value}z,.txt"
    r = CliRunner().invoke(main, ["--sd-scripts", sd, "ablate", "--good", str(good), "--bad", str(bad), "--out",
                                  str(study), "--sweep", sweep, "--backend", backend])
    assert r.exit_code == 0, r.output
    meta = tomllib.loads((study / "study.toml").read_text())
    assert set(meta["runs"]) == {"g" + good_name, "b" + bad_name}  # names kept exactly, through tomlkit
    bindir, calls = _bin(tmp)
    ran = _check_study(study, bindir, calls, canary, sd,
                       ("caption_extension", f"a{sweep_value}z".strip(), ".txt"))
    assert ran >= 4
    # the user's train.sh is in every variant folder next to the runner, edited only at its flag lines
    assert (study / "control" / "train.sh").read_text().startswith("#!/usr/bin/env bash\n# my training script\n")

    bis = tmp / "bisect"
    r = CliRunner().invoke(main, ["--sd-scripts", sd, "bisect", "start", "--good", str(good), "--bad", str(bad),
                                  "--out", str(bis), "--backend", backend])
    assert r.exit_code == 0, r.output
    assert _check_study(bis, bindir, calls, canary, sd) >= 2
    assert not canary.exists()


HOSTILE = [
    "\ntouch {c}\n", "\rtouch {c}", "$(touch {c})", "`touch {c}`", "; touch {c}", "'\"; touch {c}; #",
    "\x00\x1b[2J\x07", "".join(CONTROL), "".join(META), "\u2028touch {c}\u2029", "\\\ntouch {c}",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_and_values_run_nothing_but_kohya(tmp_path, value):
    canary = shlex.quote(str(tmp_path / "CANARY"))
    v = value.replace("{c}", canary)
    sweep_value = v.replace("\x00", "").replace(",", "")  # argv cannot hold NUL; a comma separates sweep values
    _ablate_and_run(tmp_path, v, v[::-1], sweep_value, "sd " + v.replace("\x00", "").replace("/", ""))


def test_builtin_backend_runner_is_just_as_safe(tmp_path):
    canary = shlex.quote(str(tmp_path / "CANARY"))
    v = f"\ntouch {canary}\n$(touch {canary})"
    _ablate_and_run(tmp_path, v, v, v, "sd", backend="builtin")


_text = st.lists(st.sampled_from(CONTROL + META + list("ab")), max_size=12).map("".join)


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: every example runs ablate twice
@given(head=_text, payload=st.integers(0, 9), tail=_text, sweep_tail=_text)
def test_fuzz_names_and_sweep_values(tmp_path_factory, head, payload, tail, sweep_tail):
    tmp = tmp_path_factory.mktemp("fuzz")
    p = _payloads(tmp / "CANARY")[payload]
    name = head + p + tail
    sweep_value = (head + p.replace("\x00", "") + sweep_tail).replace(",", "")
    _ablate_and_run(tmp, name, tail + p + head, sweep_value, "sd" + tail.replace("/", ""))


@settings(max_examples=300, deadline=None)
@given(value=st.text(), other=st.text(max_size=5))
def test_a_toml_line_edit_holds_any_value_on_its_line(value, other):
    from lora_audit.ablate.toml_edit import Edit, edit_toml

    base = '# mine\na = 1  # c\n[t]\ncaption_extension = ".txt" # x\nz = 2\n'
    out = edit_toml(base, [Edit("caption_extension", value, False, 4), Edit("a", other, False, 2)])
    assert out.count("\n") == base.count("\n")  # nothing spills onto another line
    assert tomllib.loads(out) == {"a": other, "t": {"caption_extension": value, "z": 2}}
    assert out.split("\n")[3].endswith(" # x") and out.split("\n")[0] == "# mine"


@settings(max_examples=300, deadline=None)
@given(value=st.text())
def test_comment_text_is_one_line_without_control_characters(value):
    import unicodedata

    from lora_audit.ablate.files import comment_text

    text = comment_text(value)
    assert len(text.split("\n")) == 1 and len(text.splitlines()) <= 1
    assert not any(unicodedata.category(ch)[0] == "C" for ch in text)


@settings(max_examples=40, deadline=None)
@given(value=st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30))
def test_a_shell_word_arrives_literally(value):
    from lora_audit.ablate.script_edit import quote

    res = subprocess.run(["bash", "-c", "printf '%s\\0' " + quote(value, "shell")], capture_output=True, timeout=10,
                         env={"PATH": "/usr/bin:/bin"})
    assert res.returncode == 0 and res.stdout.decode("utf-8", "surrogatepass") == value + "\0"


def test_a_non_utf8_value_is_one_line_and_nothing_written(tmp_path):
    """A non-UTF-8 byte in --sd-scripts or a --sweep value (Python's surrogateescape) cannot go into study.toml or
    a config TOML (TOML is UTF-8): one line, nothing written."""
    good = _script_run(tmp_path, "good", "mine")
    (good / "run.toml").write_text('verdict = "good"\n')
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.toml").write_text(BAD)
    for args in (["--sd-scripts", str(tmp_path) + "/sd\udcff", "ablate"],
                 ["ablate", "--sweep", "caption_extension=.t\udcffx"]):
        r = CliRunner().invoke(main, [*args, "--good", str(good), "--bad", str(bad), "--out", str(tmp_path / "s")])
        assert r.exit_code == 2 and "not UTF-8" in r.output and "Traceback" not in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


def test_crlf_batch_script_keeps_its_line_ends_and_quotes_for_cmd():
    from lora_audit.ablate.script_edit import ScriptEditError, edit_script

    text = "accelerate launch train_network.py ^\r\n  --network_dim=32 ^\r\n  --seed=1\r\n"
    out = edit_script(text, "bat", {"caption_extension": ('%PATH%&calc"x', False)}, {"network_dim": 2, "seed": 3})
    assert out.split("\n")[2] == '  --seed=1 --caption_extension="%%PATH%%&calc""x"\r'
    out = edit_script(text, "bat", {"seed": (None, True)}, {"network_dim": 2, "seed": 3})
    assert out == "accelerate launch train_network.py ^\r\n  --network_dim=32\r\n"  # no ^ left dangling
    with pytest.raises(ScriptEditError):
        edit_script(text, "bat", {"caption_extension": ("a\r\nb", False)}, {"network_dim": 2, "seed": 3})
