"""Tiny models and the toy dataset: made locally, deterministic, loadable, and in kohya's layout."""

import json

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from train_helpers import tiny_model, toy_dataset  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.errors import EvidenceError  # noqa: E402
from lora_audit.evidence.dataset_toml import parse_dataset_toml  # noqa: E402
from lora_audit.train.tiny_model import detect_arch, make_tiny_model  # noqa: E402
from lora_audit.train.toy_dataset import TRIGGER, make_toy_dataset  # noqa: E402


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_model_bytes_and_another_seed_differs(tmp_path):
    a = make_tiny_model(tmp_path / "a", "sd15", seed=3)
    b = make_tiny_model(tmp_path / "b", "sd15", seed=3)
    c = make_tiny_model(tmp_path / "c", "sd15", seed=4)
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    unet = [k for k in fa if k.parts[0] == "unet" and k.suffix == ".safetensors"]
    assert unet and fa[unet[0]] != fc[unet[0]]
    assert sum(len(v) for v in fa.values()) < 30 * 2**20  # tiny: a few MB


@pytest.mark.parametrize("arch, cls", [("sd15", "StableDiffusionPipeline"), ("sdxl", "StableDiffusionXLPipeline")])
def test_tiny_pipeline_loads_and_generates_64px(arch, cls):
    from diffusers import DiffusionPipeline

    path = tiny_model(arch)
    assert detect_arch(path) == arch
    pipe = DiffusionPipeline.from_pretrained(path, local_files_only=True)
    assert type(pipe).__name__ == cls
    pipe.set_progress_bar_config(disable=True)
    # the default size is 64×64 (timings are in benchmarks/bench_train.py, not asserted here)
    image = pipe(f"{TRIGGER}, punk", num_inference_steps=4, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)


def test_tiny_layout_is_the_real_architectures():
    from diffusers import UNet2DConditionModel

    sd = UNet2DConditionModel.load_config(tiny_model("sd15") / "unet")
    assert sd["down_block_types"] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"] and sd["layers_per_block"] == 2
    assert not sd.get("use_linear_projection")
    xl = UNet2DConditionModel.load_config(tiny_model("sdxl") / "unet")
    assert xl["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert xl["use_linear_projection"] and xl["addition_embed_type"] == "text_time"


def test_make_tiny_model_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("keep me")
    with pytest.raises(EvidenceError, match="not empty"):
        make_tiny_model(tmp_path / "m")
    assert (tmp_path / "m" / "x").read_text() == "keep me"


def test_toy_dataset_is_kohya_style_with_trigger_captions():
    ds = toy_dataset()
    assert ds.image_dir.name == "2_pixelpunk" and ds.image_dir.parent == ds.train_data_dir
    pngs = sorted(ds.image_dir.glob("*.png"))
    assert len(pngs) == 4
    for png in pngs:
        caption = png.with_suffix(".txt").read_text()
        assert caption.startswith("pixel art, 24x24, ") and caption.endswith("\n")
    cfg = parse_dataset_toml(ds.dataset_toml)
    assert cfg.warnings == []
    (resolved,) = cfg.resolve()
    (sub,) = resolved.subsets
    assert sub.params["image_dir"] == str(ds.image_dir.resolve()) and sub.params["num_repeats"] == 2
    assert sub.params["keep_tokens"] == 2 and sub.params["shuffle_caption"] is True
    assert resolved.params["resolution"] == 64 and resolved.params["batch_size"] == 2


def test_toy_dataset_same_seed_same_files(tmp_path):
    a = make_toy_dataset(tmp_path / "a", images=3, seed=1)
    b = make_toy_dataset(tmp_path / "b", images=3, seed=1)
    assert _files(a.image_dir) == _files(b.image_dir)
    c = make_toy_dataset(tmp_path / "c", images=3, seed=2)
    assert _files(a.image_dir) != _files(c.image_dir)


def test_cli_make_commands(tmp_path):
    cli = CliRunner()
    out = cli.invoke(main, ["make-toy-dataset", str(tmp_path / "d"), "--images", "2", "--model",
                            str(tiny_model("sd15")), "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["images"] == 2 and info["config_toml"].endswith("config.toml")
    out = cli.invoke(main, ["make-tiny-model", str(tmp_path / "m"), "--arch", "sdxl"])
    assert out.exit_code == 0 and (tmp_path / "m" / "model_index.json").is_file()
    out = cli.invoke(main, ["make-tiny-model", str(tmp_path / "m")])
    assert out.exit_code == 2 and out.output.startswith("error: ") and out.output.count("\n") == 1


def _kohya_dataset_checks(resolved, image_sizes):
    """What kohya's DreamBooth dataset asserts before it trains (train_util.BaseDataset.__getitem__ and
    adjust_min_max_bucket_reso_by_steps): without bucketing every image must be the resolution exactly (larger:
    "image too large, but cropping and bucketing are disabled", smaller: "image size is small"); with it the bucket
    limits must hold the resolution."""
    from lora_audit.train.buckets import Buckets

    p = resolved.params
    res = p["resolution"]
    reso = (res, res) if isinstance(res, int) else tuple(res)
    if not p["enable_bucket"]:
        assert all(s == reso for s in image_sizes), f"kohya refuses {image_sizes} at {reso} without bucketing"
        return [reso]
    steps = p["bucket_reso_steps"]
    assert p["min_bucket_reso"] % steps == 0 and p["max_bucket_reso"] % steps == 0
    assert p["min_bucket_reso"] <= min(reso) and max(reso) <= p["max_bucket_reso"]
    buckets = Buckets(reso, p)  # the embedded trainer's copy of kohya's BucketManager, assertions included
    return [buckets.select(*s)[0] for s in image_sizes]


@pytest.mark.parametrize("size", [96, 48, 64])
def test_cli_toy_dataset_passes_kohyas_dataset_checks(tmp_path, size):
    """The defaults (96 px images, resolution 64) used to have no bucketing, which kohya refuses."""
    from PIL import Image

    r = CliRunner().invoke(main, ["make-toy-dataset", str(tmp_path / "d"), "--images", "2", "--size", str(size)])
    assert r.exit_code == 0, r.output
    cfg = parse_dataset_toml(tmp_path / "d" / "dataset.toml")
    assert cfg.warnings == []  # every key is one kohya's dataset config schema accepts
    (resolved,) = cfg.resolve()
    sizes = [Image.open(p).size for p in sorted((tmp_path / "d" / "img").rglob("*.png"))]
    assert sizes == [(size, size)] * 2
    assert _kohya_dataset_checks(resolved, sizes) == [(64, 64)] * 2
    assert resolved.params["bucket_no_upscale"] is (size >= 64)  # larger images are only scaled down


def test_toy_dataset_resolution_must_fit_the_bucket_steps(tmp_path):
    r = CliRunner().invoke(main, ["make-toy-dataset", str(tmp_path / "d"), "--resolution", "100"])
    assert r.exit_code == 2 and "multiple of 64" in r.output and "Traceback" not in r.output


def test_embedded_trainer_trains_on_the_default_toy_dataset(tmp_path):
    from train_helpers import write_config

    from lora_audit.train.trainer import train

    r = CliRunner().invoke(main, ["make-toy-dataset", str(tmp_path / "d"), "--images", "2", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    cfg = write_config(tmp_path / "run", tiny_model("sd15"), tmp_path / "d" / "dataset.toml")
    result = train(["--config_file", str(cfg)], tmp_path, echo=lambda s: None, progress=False)
    assert result.steps == 2 and result.final is not None and result.final.is_file()


@pytest.mark.slow
def test_a_trained_folder_inspects_without_false_conflicts(tmp_path):
    """kohya records ss_num_epochs (derived from max_train_steps) and only the name of a local model path
    (ss_sd_model_name): neither is a second value of the command's arguments."""
    from lora_audit.train.trainer import train

    folder = tmp_path / "run"
    (folder / "cfg").mkdir(parents=True)
    cfg = folder / "cfg" / "config.toml"
    cfg.write_text("\n".join([
        f'pretrained_model_name_or_path = "{tiny_model("sd15")}"', f'dataset_config = "{toy_dataset().dataset_toml}"',
        f'output_dir = "{folder / "output"}"', 'output_name = "v"', 'network_module = "networks.lora"',
        "network_dim = 4", "network_alpha = 2.0", "max_train_steps = 2", "seed = 1"]) + "\n")
    (folder / "train.sh").write_text("accelerate launch train_network.py --config_file cfg/config.toml\n")
    result = train(["--config_file", str(cfg)], folder, echo=lambda s: None, progress=False)
    assert result.final == folder / "output" / "v.safetensors"
    r = CliRunner().invoke(main, ["inspect", "--json", str(folder)])
    assert r.exit_code == 0, r.output
    (run,) = json.loads(r.output)["runs"]
    assert run["conflicts"] == []
    assert run["params"]["max_train_epochs"]["origin"] == "default"
    assert "consistent with" in run["params"]["max_train_epochs"]["note"]
    assert "ss_num_epochs" in run["params"]["max_train_epochs"]["note"]
    text = CliRunner().invoke(main, ["inspect", str(folder)]).output
    assert "conflicts:" not in text
