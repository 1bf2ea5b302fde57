"""load_run: merging evidence with provenance, conflicts, defaults only for whole invocations."""

import pytest
from conftest import GOOD, write_run

from lora_audit.errors import EvidenceError
from lora_audit.evidence import load_run, load_runs


def test_whole_config_gets_kohya_defaults_marked_as_defaults(tmp_path):
    run = load_run(write_run(tmp_path, "r", GOOD, "good"))
    assert run.verdict == "good" and run.name == "r"
    assert run.params["network_dim"].origin == "explicit"
    assert run.params["network_dim"].source.endswith("config.toml:4")
    p = run.params["gradient_accumulation_steps"]
    assert p.origin == "default" and p.value == 1 and p.source is None


def test_partial_evidence_leaves_unknowns_unknown(tmp_path):
    run = load_run(write_run(tmp_path, "r", "network_dim = 16\n"))
    assert run.params["network_dim"].value == 16
    assert run.params["shuffle_caption"].origin == "unknown" and run.params["shuffle_caption"].value is None
    assert "gradient_checkpointing" not in run.params  # never invents a default for a partial run


def test_disagreeing_evidence_is_a_conflict_naming_both(tmp_path):
    d = write_run(tmp_path, "r", GOOD)
    (d / "second.toml").write_text(GOOD.replace("network_dim = 32", "network_dim = 64"))
    run = load_run(d)
    (c,) = [c for c in run.conflicts if c.param == "network_dim"]
    assert {v.value for v in c.values} == {32, 64}
    assert {v.source.split("/")[-1].split(":")[0] for v in c.values} == {"config.toml", "second.toml"}
    assert "conflicting evidence" in run.params["network_dim"].note


def test_size_only_run_is_inferred_with_alternatives(tmp_path):
    d = tmp_path / "baby"
    d.mkdir()
    (d / "run.toml").write_text('verdict = "bad"\narch = "sd15"\n'
                                '[[artifacts]]\nname = "x.safetensors"\nsize = "72MB"\n')
    run = load_run(d)
    dim = run.params["network_dim"]
    assert dim.origin == "inferred"
    values = {dim.value, *(a.value for a in dim.alternatives)}
    assert {32, 64} <= values  # dim 64 @ fp16 or dim 32 @ fp32: the size can't tell
    assert run.params["shuffle_caption"].origin == "unknown"


def test_folder_of_runs_expands(tmp_path):
    write_run(tmp_path, "a", GOOD, "good")
    write_run(tmp_path, "b", GOOD, "bad")
    (tmp_path / "README.md").write_text("# notes about the study, no commands\n")
    assert [r.name for r in load_runs([tmp_path])] == ["a", "b"]


@pytest.mark.parametrize("setup,match", [
    (lambda p: p.mkdir(), "no evidence of a training run"),
    (lambda p: None, "no such file or directory"),
])
def test_bad_run_paths(tmp_path, setup, match):
    p = tmp_path / "empty"
    setup(p)
    with pytest.raises(EvidenceError, match=match):
        load_run(p)


def test_bad_verdict(tmp_path):
    write_run(tmp_path, "r", GOOD, extra_toml='verdict = "meh"\n')
    with pytest.raises(EvidenceError, match="verdict"):
        load_run(tmp_path / "r")
