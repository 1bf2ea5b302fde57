"""The loop on CPU: two runs → ablate --backend builtin → a variant's runner trains → inspect reads it back."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from train_helpers import tiny_model, toy_dataset, write_config  # noqa: E402

from lora_audit.cli import main  # noqa: E402


@pytest.mark.slow
def test_ablation_variant_trains_with_the_builtin_backend(tmp_path):
    model, ds = tiny_model("sd15"), toy_dataset().dataset_toml
    good, bad = tmp_path / "good", tmp_path / "bad"
    write_config(good, model, ds)
    write_config(bad, model, ds, "")
    (bad / "config.toml").write_text((bad / "config.toml").read_text().replace("network_dim = 4", "network_dim = 8"))
    (good / "run.toml").write_text('verdict = "good"\n')
    (bad / "run.toml").write_text('verdict = "bad"\n')
    study = tmp_path / "study"
    r = CliRunner().invoke(main, ["ablate", "--good", str(good), "--bad", str(bad), "--out", str(study),
                                  "--backend", "builtin"])
    assert r.exit_code == 0, r.output
    variant = study / "ofat-network-dim"
    assert (variant / "dataset.toml").exists()
    env = {**os.environ, "LORA_AUDIT_PYTHON": sys.executable}
    res = subprocess.run(["bash", str(variant / "lora-audit-run.sh")], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    lora = variant / "output" / "toy-ofat-network-dim.safetensors"
    assert lora.exists()
    inspected = CliRunner().invoke(main, ["inspect", "--json", str(lora)])
    params = json.loads(inspected.output)["runs"][0]["params"]
    assert params["network_dim"]["value"] == 8 and params["network_alpha"]["value"] == 2
