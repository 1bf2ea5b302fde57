"""compare with the other model and LoRA formats people have: a single-file original-layout checkpoint (diffusers'
from_single_file with --model-config, offline) and diffusers/peft-format LoRAs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402
from train_helpers import tiny_model  # noqa: E402

from lora_audit.cli import main  # noqa: E402

FAST = ["--steps", "2", "--size", "64x64", "--seeds", "1,2", "--quiet", "--prompt", "a knight"]


def _pixels(p: Path) -> bytes:
    with Image.open(p) as im:
        return im.convert("RGB").tobytes()


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def single_file(request, tmp_path_factory):
    """make-tiny-model --single-file, then a configs-only copy of the folder (weights deleted) as --model-config."""
    arch = request.param
    root = tmp_path_factory.mktemp(f"single-{arch}")
    r = CliRunner().invoke(main, ["make-tiny-model", str(root / "model"), "--arch", arch,
                                  "--single-file", str(root / "tiny.safetensors"), "--json"])
    assert r.exit_code == 0, r.output
    configs = root / "configs"
    shutil.copytree(root / "model", configs)
    for w in configs.rglob("*.safetensors"):
        w.unlink()
    return arch, root / "model", root / "tiny.safetensors", configs


def test_single_file_checkpoint_holds_every_weight_of_the_folder(single_file):
    arch, folder, ckpt, configs = single_file
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
    a = DiffusionPipeline.from_pretrained(folder)
    b = cls.from_single_file(str(ckpt), config=str(configs), local_files_only=True)
    for comp in ("unet", "vae", "text_encoder") + (("text_encoder_2",) if arch == "sdxl" else ()):
        sa, sb = getattr(a, comp).state_dict(), getattr(b, comp).state_dict()
        assert set(sa) <= set(sb), comp
        assert all(not sb[k].is_meta and torch.equal(sa[k], sb[k]) for k in sa), comp


def test_compare_on_a_single_file_gives_the_folders_images(single_file, tmp_path):
    arch, folder, ckpt, configs = single_file
    r1 = CliRunner().invoke(main, ["compare", "--base", str(folder), "--out", str(tmp_path / "a"), *FAST])
    r2 = CliRunner().invoke(main, ["compare", "--base", str(ckpt), "--model-config", str(configs),
                                   "--out", str(tmp_path / "b"), "--json", *FAST])
    assert r1.exit_code == 0, r1.output
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.stdout)["metadata"]["base_model"]["arch"] == arch
    for seed in (1, 2):
        rel = f"images/p01/base/seed{seed}.png"
        assert _pixels(tmp_path / "a" / rel) == _pixels(tmp_path / "b" / rel)


def test_single_file_without_model_config_is_refused_without_download(single_file, tmp_path):
    arch, folder, ckpt, configs = single_file
    r = CliRunner().invoke(main, ["compare", "--base", str(ckpt), "--out", str(tmp_path), *FAST])
    assert r.exit_code == 2
    line, = r.output.strip().splitlines()
    assert line.startswith(f"error: {ckpt}: a single-file checkpoint needs --model-config DIR")
    other = tiny_model("sd15" if arch == "sdxl" else "sdxl")
    r = CliRunner().invoke(main, ["compare", "--base", str(ckpt), "--model-config", str(other), "--out",
                                  str(tmp_path), *FAST])
    assert r.exit_code == 2 and "give a folder of the checkpoint's architecture" in r.output


def _peft_lora(arch: str, folder: Path) -> Path:
    """A diffusers/peft-format LoRA (unet.<module>.lora_A/B.weight), as diffusers' training scripts save them."""
    from diffusers import DiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = DiffusionPipeline.from_pretrained(tiny_model(arch))
    torch.manual_seed(0)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                     init_lora_weights="gaussian"))
    g = torch.Generator().manual_seed(1)  # peft starts B at zero (no effect); a trained LoRA's B is not
    sd = {k: torch.randn(v.shape, generator=g) if "lora_B" in k else v
          for k, v in get_peft_model_state_dict(pipe.unet).items()}
    type(pipe).save_lora_weights(folder, unet_lora_layers=sd, safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


def test_peft_format_lora_is_loaded_and_counted(tmp_path):
    lora = _peft_lora("sd15", tmp_path / "peft")
    r = CliRunner().invoke(main, ["compare", "--base", str(tiny_model("sd15")), "--lora", f"{lora}@0,1",
                                  "--out", str(tmp_path / "o"), "--json", *FAST])
    assert r.exit_code == 0, r.output
    models = {m["model_name"]: m for m in json.loads(r.stdout)["statistics"]["models"]}
    m = models["pytorch_lora_weights @1"]
    assert (m["modules_in_file"], m["modules_matched"], m["modules_unmatched"]) == (128, 128, 0)
    assert m["distance_to_base"]["mean"] > 1
    assert models["pytorch_lora_weights @0"]["distance_to_base"]["max"] == 0


def test_peft_format_lora_for_another_architecture_is_refused(tmp_path):
    lora = _peft_lora("sdxl", tmp_path / "peft")
    r = CliRunner().invoke(main, ["compare", "--base", str(tiny_model("sd15")), "--lora", str(lora),
                                  "--out", str(tmp_path / "o"), *FAST])
    assert r.exit_code == 2
    line, = r.output.strip().splitlines()
    assert line.startswith(f"error: {lora}: LoRA does not fit this sd15 model:")
    assert not list((tmp_path / "o").glob("images/**/*.png"))


def test_progress_in_a_log_is_a_line_per_tenth_with_eta(tmp_path):
    r = CliRunner().invoke(main, ["compare", "--base", str(tiny_model("sd15")), "--prompt", "a knight", "--steps",
                                  "1", "--size", "64x64", "--seeds", "1-25", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    bars = [line for line in r.stderr.splitlines() if line.startswith("[")]
    assert 10 <= len(bars) <= 11 and bars[-1].startswith("[########################] 25/25 ETA 0:00")
    assert all(" ETA " in b for b in bars)
    report = (tmp_path / "report.md").read_text()
    lines = report.splitlines()
    # every table is one block: its rows follow the header with no blank line between (Markdown ends a table there)
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            rows = lines[i + 1:]
            assert rows and rows[0].startswith("| base |"), report
    assert "\n\n\n" not in report
