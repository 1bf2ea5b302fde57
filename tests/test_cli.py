"""CliRunner tests: each command's behaviour as a user sees it."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import BAD, GOOD, write_run

from lora_audit.cli import main


@pytest.fixture
def cli():
    return CliRunner()


def test_inspect_text_hides_defaults_unless_all(cli, tmp_path):
    d = write_run(tmp_path, "r", GOOD, "good")
    out = cli.invoke(main, ["inspect", str(d)])
    assert out.exit_code == 0, out.output
    assert "## Network" in out.output and "network_dim" in out.output and "explicit" in out.output
    assert "gradient_accumulation_steps" not in out.output and "hidden" in out.output
    out_all = cli.invoke(main, ["inspect", "--all", str(d)])
    assert "gradient_accumulation_steps" in out_all.output and "default" in out_all.output


def test_inspect_json_shape(cli, tmp_path):
    d = write_run(tmp_path, "r", GOOD.replace("network_dim = 32", "network_dims = 32"), "good")
    out = cli.invoke(main, ["inspect", "--json", str(d)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    (run,) = data["runs"]
    assert set(run) >= {"name", "verdict", "script", "evidence", "params", "conflicts", "warnings"}
    assert run["verdict"] == "good"
    p = run["params"]["network_alpha"]
    assert p == {"value": 16, "origin": "explicit", "source": p["source"], "note": None}
    assert p["source"].endswith("config.toml:5")
    assert run["evidence"][0]["kind"] == "config_toml"
    assert any("network_dims" in w["message"] and w["source"].endswith(":4") for w in run["warnings"])


def test_diff_text_and_json(cli, tmp_path):
    a, b = write_run(tmp_path, "a", GOOD), write_run(tmp_path, "b", BAD)
    out = cli.invoke(main, ["diff", str(a), str(b)])
    assert out.exit_code == 0, out.output
    assert "DOUBLED 32→64" in out.output and "REMOVED (was 6)" in out.output and "nominal" in out.output
    data = json.loads(cli.invoke(main, ["diff", "--json", str(a), str(b)]).output)
    assert data["runs"] == ["a", "b"]
    ch = {c["param"]: c for c in data["changes"]}
    assert ch["network_dim"]["kind"] == "changed" and ch["network_dim"]["category"] == "Network"
    dim_a = ch["network_dim"]["values"]["a"]
    assert dim_a == {"value": 32, "origin": "explicit", "source": dim_a["source"]}
    assert {d["param"] for d in data["derived"]} >= {"effective_batch", "pixels_per_sample"}
    same = json.loads(cli.invoke(main, ["diff", "--json", "--all", str(a), str(b)]).output)
    assert any(c["kind"] == "same" for c in same["changes"])


def test_audit_writes_report_and_json(cli, tmp_path):
    write_run(tmp_path / "study", "good", GOOD, "good")
    write_run(tmp_path / "study", "bad", BAD, "bad")
    report = tmp_path / "r.md"
    out = cli.invoke(main, ["audit", str(tmp_path / "study"), "--out", str(report)])
    assert out.exit_code == 0, out.output
    assert "primary suspects:" in out.output and "network_dim" in out.output
    text = report.read_text()
    assert "## good → bad" in text and "### Suspects, ranked" in text and "| 1 | **primary** |" in text
    data = json.loads(cli.invoke(main, ["audit", "--json", str(tmp_path / "study")]).output)
    assert data["pairs"][0]["findings"][0]["level"] == "primary"
    assert data["diff"]["runs"] == ["good", "bad"]


def test_audit_verdicts_from_options(cli, tmp_path):
    a, b = write_run(tmp_path, "a", GOOD), write_run(tmp_path, "b", BAD)
    out = cli.invoke(main, ["audit", "--json", "--good", "a", "--bad", "b", str(a), str(b)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["good"] == ["a"]


def test_custom_template(cli, tmp_path):
    a, b = write_run(tmp_path, "a", GOOD, "good"), write_run(tmp_path, "b", BAD, "bad")
    t = tmp_path / "mine.md.j2"
    t.write_text("{% for p in audit.pairs %}{{ p.good }}>{{ p.bad }}:{{ p.findings[0].params[0] }}{% endfor %}\n")
    out = cli.invoke(main, ["audit", str(a), str(b), "--template", str(t), "--out", str(tmp_path / "o.md")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "o.md").read_text().startswith("a>b:")


@pytest.mark.parametrize("args,message", [
    (["inspect", "nope"], "error: nope: no such file or directory"),
    (["diff", "{a}"], "diff needs at least two runs"),
    (["audit", "{a}"], "an audit needs at least two runs"),
    (["audit", "--good", "zzz", "{a}", "{b}"], "no run named 'zzz'"),
    (["audit", "{empty}", "{a}"], "no evidence of a training run"),
    (["inspect", "{broken}"], "broken.toml:2: invalid TOML"),
])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, args, message):
    a, b = write_run(tmp_path, "a", GOOD, "good"), write_run(tmp_path, "b", BAD, "bad")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken.toml"
    broken.write_text("network_dim = 1\nthis is not toml\n")
    args = [x.format(a=a, b=b, empty=tmp_path / "empty", broken=broken) for x in args]
    out = cli.invoke(main, args)
    assert out.exit_code == 2
    assert message in out.output
    assert "Traceback" not in out.output and len(out.output.strip().splitlines()) == 1


def test_debug_shows_the_traceback(cli):
    out = cli.invoke(main, ["--debug", "inspect", "nope"])
    assert out.exit_code != 0 and out.exception is not None


def test_light_commands_do_not_import_torch(tmp_path):
    a, b = write_run(tmp_path, "a", GOOD, "good"), write_run(tmp_path, "b", BAD, "bad")
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom lora_audit.cli import main\n"
        f"for args in (['inspect', {str(a)!r}], ['diff', {str(a)!r}, {str(b)!r}], "
        f"['audit', '--json', {str(a)!r}, {str(b)!r}]):\n"
        "    r = CliRunner().invoke(main, args)\n    assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_infer_dim_text_and_json(cli):
    out = cli.invoke(main, ["infer-dim", "72MB", "--arch", "sd15", "--json"])
    assert out.exit_code == 0, out.output
    cands = json.loads(out.output)["candidates"]
    assert set(cands[0]) == {"arch", "network_dim", "save_precision", "text_encoder", "conv_dim", "expected_bytes",
                             "delta_bytes", "variant", "layout", "network_args"}
    top = {(c["network_dim"], c["save_precision"]) for c in cands[:4]}
    assert (64, "fp16") in top and (32, "float") in top  # the size can't tell them apart: both are said
    text = cli.invoke(main, ["infer-dim", "1.7GB"])
    assert text.exit_code == 0 and "sdxl" in text.output and "128" in text.output
    bad = cli.invoke(main, ["infer-dim", "seventy megs"])
    assert bad.exit_code == 2 and bad.output.startswith("error:")


def test_script_and_lora_header_disagree_is_a_conflict(cli, tmp_path):
    from loras import write_lora

    d = tmp_path / "run"
    d.mkdir()
    (d / "train.sh").write_text("accelerate launch train_network.py --pretrained_model_name_or_path=m \\\n"
                                "  --train_data_dir=img --network_dim=32 --network_alpha=16\n")
    write_lora(d / "out.safetensors", "sd15", 64, "fp16", network_alpha=16)
    data = json.loads(cli.invoke(main, ["inspect", "--json", str(d)]).output)
    (run,) = data["runs"]
    (conflict,) = [c for c in run["conflicts"] if c["param"] == "network_dim"]
    sources = {v["source"].rsplit("/", 1)[-1]: v["value"] for v in conflict["values"]}
    assert sources["train.sh:2"] == 32 and any(k.startswith("out.safetensors") and v == 64 for k, v in sources.items())
    assert run["params"]["network_dim"]["value"] == 32  # the invocation keeps the value; the conflict is reported


def test_an_error_naming_a_file_with_a_newline_or_escape_in_its_name_is_one_line(tmp_path):
    """The file name goes into the error as escapes: a newline cannot split the line, nor a terminal escape
    reach the terminal."""
    bad = tmp_path / "run\n$(x)\x1b[31m.toml"
    bad.write_text("network_dim = [[[\n")
    r = CliRunner().invoke(main, ["inspect", str(bad)])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "run\\n$(x)\\x1b[31m.toml" in lines[0] and "\x1b" not in r.output
