import os
import textwrap
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.kohya`` tests run real sd-scripts: skipped, with the reason, unless both a checkout and its
    Python are given (DEVELOPERS.md says how to set them up)."""
    missing = [v for v in ("LORA_AUDIT_SD_SCRIPTS", "LORA_AUDIT_KOHYA_PYTHON") if not os.environ.get(v)]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"real sd-scripts tests need {' and '.join(missing)} (see DEVELOPERS.md)")
    for item in items:
        if item.get_closest_marker("kohya") is not None:
            item.add_marker(skip)


def write_run(root: Path, name: str, config: str, verdict: str | None = None, extra_toml: str = "") -> Path:
    """A run folder holding a kohya config TOML (and a run.toml with the verdict)."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.toml").write_text(textwrap.dedent(config))
    if verdict or extra_toml:
        (d / "run.toml").write_text((f'verdict = "{verdict}"\n' if verdict else "") + textwrap.dedent(extra_toml))
    return d


GOOD = """\
pretrained_model_name_or_path = "runwayml/stable-diffusion-v1-5"
train_data_dir = "img"
network_module = "networks.lora"
network_dim = 32
network_alpha = 16
resolution = "512,512"
train_batch_size = 4
learning_rate = 1e-4
mixed_precision = "fp16"
save_precision = "fp16"
noise_offset = 0.1
multires_noise_iterations = 6
multires_noise_discount = 0.3
shuffle_caption = true
keep_tokens = 2
max_token_length = 225
max_train_epochs = 10
"""

BAD = """\
pretrained_model_name_or_path = "runwayml/stable-diffusion-v1-5"
train_data_dir = "img"
network_module = "networks.lora"
network_dim = 64
network_alpha = 32
resolution = "1024"
train_batch_size = 2
learning_rate = 0.0001
mixed_precision = "bf16"
noise_offset = 0.1
max_train_epochs = 10
"""


@pytest.fixture
def two_runs(tmp_path):
    return write_run(tmp_path, "good", GOOD, "good"), write_run(tmp_path, "bad", BAD, "bad")
