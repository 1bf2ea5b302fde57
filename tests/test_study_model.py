"""study.toml and variant.json have one loader each (lora_audit.study_model): a damaged file is the same one line
whichever command reads it (ablate/bisect, launch, status, compare --study), and what ablate writes reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lora_audit.cli import main
from lora_audit.errors import EvidenceError
from lora_audit.study_model import Study, Variant, load_study, load_variant


def _study(root: Path, toml: str, variant: str | None = '{"id": "v", "hash": "h"}') -> Path:
    root.mkdir(parents=True)
    (root / "study.toml").write_text(toml)
    (root / "v").mkdir()
    (root / "v" / "train.sh").write_text("#!/usr/bin/env bash\necho hi\n")
    if variant is not None:
        (root / "v" / "variant.json").write_text(variant)
    return root


def _one_line(r, where: str) -> None:
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and where in r.output and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output


def test_hand_made_study_reads_with_defaults(tmp_path):
    study = _study(tmp_path / "s", 'bad = "b"\nvariants = ["v", "c c"]\n')
    meta = load_study(study)
    assert meta.bad == ["b"] and meta.good is None and meta.backend == "kohya" and meta.variants == ["v", "c c"]
    with pytest.raises(EvidenceError, match="good: Field required"):
        load_study(study, need_good=True)  # ablate's and bisect's studies name their good run


@pytest.mark.parametrize("toml, what", [
    ('variants = [1, 2]\n', "variants.0"),
    ('variants = ["../x"]\n', "not a variant folder name"),
    ('backend = "evil"\nvariants = ["v"]\n', "backend"),
    ('variants = ["v"\n', "not valid TOML"),
    ('runs = 5\nvariants = ["v"]\n', "runs"),
])
@pytest.mark.parametrize("command", [["status"], ["launch", "--dry-run"], ["compare", "--study"]])
def test_damaged_study_toml_is_one_line_for_every_reader(tmp_path, toml, what, command):
    study = _study(tmp_path / "s", toml)
    r = CliRunner().invoke(main, [*command, str(study)])
    _one_line(r, "study.toml")
    assert what in r.output


@pytest.mark.parametrize("text, what", [("{", "not valid JSON"), ('{"hash": 5}', "hash"), ("[]", "(top)"),
                                        ('{"changes": [{"to": 1}]}', "changes.0.param")])
def test_damaged_variant_json_is_one_line(tmp_path, text, what):
    study = _study(tmp_path / "s", 'variants = ["v"]\n', text)
    for command in (["status"], ["launch", "--dry-run"]):
        r = CliRunner().invoke(main, [*command, str(study)])
        _one_line(r, "variant.json")
        assert what in r.output


def test_written_study_and_variant_read_back(tmp_path):
    import tomlkit

    meta = Study(good="g", bad=["b"], strategy="ofat", variants=["control"], runs={"g": "/r/g", "b": "/r/b"})
    (tmp_path / "study.toml").write_text(tomlkit.dumps(meta.document()))
    assert load_study(tmp_path, need_good=True) == meta
    record = Variant.model_validate({"id": "control", "changes": [{"param": "lr", "from": 1, "to": 2}],
                                     "runner": "lora-audit-run.sh"})
    (tmp_path / "variant.json").write_text(record.to_text())
    assert json.loads((tmp_path / "variant.json").read_text())["changes"] == [{"param": "lr", "from": 1, "to": 2}]
    back = load_variant(tmp_path)
    assert back == record and back.runner_file == "lora-audit-run.sh" and back.changes[0].from_ == 1
    assert load_variant(tmp_path / "nowhere") is None
