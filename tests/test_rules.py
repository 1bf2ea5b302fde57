import pytest
from conftest import GOOD, write_run

from lora_audit.evidence import load_run
from lora_audit.rules.engine import RuleError, find_suspects, load_rules


def _ids(findings):
    return {f.id: f for f in findings}


def test_bundled_rules_are_valid():
    rules = load_rules()
    assert len(rules["rule"]) > 10 and rules["fact"]


def test_primary_suspects_and_levels(two_runs):
    f = _ids(find_suspects(*(load_run(p) for p in two_runs)))
    assert f["dim-changed-scale-kept"].level == "primary"  # 16/32 == 32/64: capacity, not strength
    assert "alpha/dim scale kept at 0.5" in f["dim-changed-scale-kept"].title
    assert f["alpha-changed-scale-kept"].level == "unlikely"
    assert f["noise-regularizer-removed"].level == "primary"
    assert f["shuffle-removed"].level == "primary"
    assert f["max-token-length-cut"].level == "primary"
    assert f["resolution-up-batch-down"].level == "secondary"
    assert f["save-precision-changed"].level == "unlikely"
    assert f["dim-changed-scale-kept"].evidence  # sources behind it
    assert "multires_noise_discount" not in {p for x in f.values() for p in x.params}  # nominal only


def test_scale_change_is_its_own_rule(tmp_path):
    good = load_run(write_run(tmp_path, "g", GOOD, "good"))
    bad = load_run(write_run(tmp_path, "b", GOOD.replace("network_alpha = 16", "network_alpha = 32"), "bad"))
    f = _ids(find_suspects(good, bad))
    assert f["alpha-changed-scale-changed"].level == "primary" and "0.5 → 1" in f["alpha-changed-scale-changed"].title


def test_shuffle_without_keep_tokens_buries_trigger(tmp_path):
    good = load_run(write_run(tmp_path, "g", GOOD, "good"))
    bad = load_run(write_run(tmp_path, "b", GOOD.replace("keep_tokens = 2", "keep_tokens = 0"), "bad"))
    assert _ids(find_suspects(good, bad))["shuffle-buries-trigger"].level == "primary"


def test_typo_key_is_a_finding(tmp_path):
    good = load_run(write_run(tmp_path, "g", GOOD, "good"))
    bad = load_run(write_run(tmp_path, "b", GOOD.replace("network_dim = 32", "network_dims = 32"), "bad"))
    f = _ids(find_suspects(good, bad))
    assert f["ignored-key"].level == "primary" and "network_dim" in f["ignored-key"].title
    assert f["ignored-key"].kind == "fact"


def test_unknowns_are_findings(tmp_path):
    good = load_run(write_run(tmp_path, "g", GOOD, "good"))
    bad = load_run(write_run(tmp_path, "b", "network_dim = 64\n", "bad"))
    unk = [x for x in find_suspects(good, bad) if x.kind == "unknown"]
    assert unk and "shuffle_caption" in unk[0].params


def test_a_rule_file_is_data(tmp_path):
    p = tmp_path / "rules.toml"
    p.write_text('[[rule]]\nid = "x"\nparams = ["network_dim"]\nimpact = "extreme"\ntitle = "t"\nwhy = "w"\n')
    with pytest.raises(RuleError):
        load_rules(p)
    p.write_text('[[rule]]\nid = "mine"\nparams = ["network_dim"]\nimpact = "low"\ntitle = "dim {words}"\nwhy = "w"\n')
    good = load_run(write_run(tmp_path, "g", GOOD, "good"))
    bad = load_run(write_run(tmp_path, "b", GOOD.replace("network_dim = 32", "network_dim = 64"), "bad"))
    f = _ids(find_suspects(good, bad, rules=load_rules(p)))
    assert f["mine"].title == "dim DOUBLED 32→64" and f["mine"].level == "unlikely"
