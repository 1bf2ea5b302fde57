"""What the builtin trainer makes of a kohya command line, before any training (no torch needed)."""

import json
from pathlib import Path

import pytest

from lora_audit.errors import EvidenceError
from lora_audit.train.options import plan_training


def fake_model(root: Path, cls: str = "StableDiffusionPipeline") -> Path:
    m = root / "model"
    m.mkdir(parents=True, exist_ok=True)
    (m / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    return m


def setup(tmp_path: Path, config: str = "", dataset: str | None = None) -> Path:
    model = fake_model(tmp_path)
    (tmp_path / "img" / "5_punk").mkdir(parents=True)
    if dataset is None:
        dataset = """
            [general]
            caption_extension = ".txt"
            keep_tokens = 1
            [[datasets]]
            resolution = 64
            batch_size = 2
              [[datasets.subsets]]
              image_dir = "img/5_punk"
              num_repeats = 3
              keep_tokens = 2
            """
    (tmp_path / "dataset.toml").write_text("\n".join(line.strip() for line in dataset.splitlines()))
    (tmp_path / "config.toml").write_text(f'pretrained_model_name_or_path = "{model}"\n'
                                          'dataset_config = "dataset.toml"\noutput_dir = "out"\n'
                                          "network_dim = 8\n" + config)
    return tmp_path


def test_kohya_precedence_command_line_over_config_and_subset_over_general(tmp_path):
    base = setup(tmp_path)
    plan = plan_training(["--config_file", "config.toml", "--network_dim", "16"], base)
    assert plan.args.network_dim == 16  # command line beats the config file
    assert plan.args.network_alpha == 1  # kohya's default
    (ds,) = plan.datasets
    assert ds.resolution == (64, 64) and ds.batch_size == 2
    (sub,) = ds.subsets
    assert sub.num_repeats == 3 and sub.params["keep_tokens"] == 2 and sub.params["caption_extension"] == ".txt"
    assert sub.image_dir == base / "img" / "5_punk"
    assert plan.arch == "sd15" and plan.script == "train_network.py" and plan.user_config


def test_sdxl_model_reads_with_the_sdxl_script(tmp_path):
    base = setup(tmp_path)
    fake_model(tmp_path, "StableDiffusionXLPipeline")
    plan = plan_training(["--config_file", "config.toml"], base)
    assert plan.arch == "sdxl" and plan.script == "sdxl_train_network.py"


def test_unsupported_parameters_are_refused_by_name(tmp_path):
    base = setup(tmp_path, 'network_module = "lycoris.kohya"\nflip_aug = true\nv2 = true\n')
    with pytest.raises(EvidenceError) as e:
        plan_training(["--config_file", "config.toml", "--optimizer_type", "Prodigy"], base)
    msg = str(e.value)
    assert "\n" not in msg
    for name in ("network_module='lycoris.kohya'", "flip_aug=True", "v2=True", "optimizer_type='Prodigy'"):
        assert name in msg
    assert "config.toml:" in msg and "--ignore-unsupported" in msg


def test_ignore_unsupported_warns_about_each(tmp_path):
    base = setup(tmp_path, "flip_aug = true\n")
    plan = plan_training(["--config_file", "config.toml"], base, ignore_unsupported=True)
    assert [u.name for u in plan.ignored] == ["flip_aug"]
    assert any("flip_aug=True is not implemented" in n for n in plan.notes)


def test_unsupported_dataset_key_is_refused(tmp_path):
    base = setup(tmp_path, dataset="""
        [[datasets]]
        resolution = 64
          [[datasets.subsets]]
          image_dir = "img/5_punk"
          color_aug = true
        """)
    with pytest.raises(EvidenceError, match="color_aug=True"):
        plan_training(["--config_file", "config.toml"], base)


def test_speed_and_precision_knobs_are_accepted_and_said(tmp_path):
    base = setup(tmp_path, 'gradient_checkpointing = true\nxformers = true\nmixed_precision = "fp16"\n'
                           'optimizer_type = "AdamW8bit"\nmax_data_loader_n_workers = 1\n')
    notes = " | ".join(plan_training(["--config_file", "config.toml"], base).notes)
    assert "gradient_checkpointing: memory" in notes and "xformers: attention kernel" in notes
    assert "max_data_loader_n_workers" in notes
    assert notes.count("mixed_precision=fp16: no-op on CPU") == 1
    assert "AdamW8bit runs as torch AdamW" in notes


def test_the_good_example_run_is_fully_implemented(tmp_path):
    """Every setting of the example study's good run (runs/examples/bespoke-punks) is honoured or inert."""
    base = setup(tmp_path)
    args = ["--train_data_dir", "img", "--output_dir", "out", "--output_name", "x", "--save_model_as",
            "safetensors", "--network_module", "networks.lora", "--network_dim", "32", "--network_alpha", "16",
            "--resolution", "64,64", "--train_batch_size", "4", "--gradient_accumulation_steps", "1",
            "--learning_rate", "0.0001", "--unet_lr", "0.0001", "--text_encoder_lr", "0.00005", "--optimizer_type",
            "AdamW8bit", "--lr_scheduler", "cosine_with_restarts", "--lr_scheduler_num_cycles", "3",
            "--min_snr_gamma", "5", "--mixed_precision", "fp16", "--save_precision", "fp16",
            "--gradient_checkpointing", "--cache_latents", "--cache_latents_to_disk", "--xformers",
            "--noise_offset", "0.1", "--multires_noise_iterations", "6", "--multires_noise_discount", "0.3",
            "--adaptive_noise_scale", "0.00357", "--caption_extension", ".txt", "--shuffle_caption",
            "--keep_tokens", "2", "--max_token_length", "225", "--bucket_reso_steps", "64", "--bucket_no_upscale",
            "--max_data_loader_n_workers", "1", "--max_train_epochs", "10", "--save_every_n_epochs", "1",
            "--seed", "42", "--pretrained_model_name_or_path", "model"]
    plan = plan_training(args, base)
    assert plan.ignored == [] and not plan.user_config
    (ds,) = plan.datasets
    (sub,) = ds.subsets
    assert (sub.num_repeats, sub.class_tokens) == (5, "punk")  # from the "5_punk" folder name
    assert sub.params["shuffle_caption"] is True and sub.params["keep_tokens"] == 2
    assert ds.resolution == (64, 64) and ds.batch_size == 4
    assert plan.args.text_encoder_lr == [0.00005] and plan.args.cache_latents is True


@pytest.mark.parametrize("argv, config, match", [
    (["--netwrk_dim", "4"], "", r"unrecognized argument --netwrk_dim \(did you mean --network_dim\?\)"),
    ([], 'learning_rate = "1e-4"\n', "learning_rate should be float"),
    ([], "", None),
])
def test_what_kohya_would_refuse_is_an_error(tmp_path, argv, config, match):
    base = setup(tmp_path, config)
    if match is None:
        plan_training(["--config_file", "config.toml"] + argv, base)
        return
    with pytest.raises(EvidenceError, match=match):
        plan_training(["--config_file", "config.toml"] + argv, base)


def test_missing_model_and_missing_data_are_one_line_errors(tmp_path):
    base = setup(tmp_path)
    with pytest.raises(EvidenceError, match="model nowhere not found") as e:
        plan_training(["--config_file", "config.toml", "--pretrained_model_name_or_path", "nowhere"], base)
    assert e.value.where == "command line:3"  # the third word is the flag
    (base / "dataset.toml").write_text('[[datasets]]\nresolution = 64\n[[datasets.subsets]]\nimage_dir = "gone"\n')
    with pytest.raises(EvidenceError, match="image folder gone not found"):
        plan_training(["--config_file", "config.toml"], base)
    with pytest.raises(EvidenceError, match="train_data_dir nothing is not a folder"):
        plan_training(["--pretrained_model_name_or_path", "model", "--train_data_dir", "nothing",
                       "--resolution", "64"], base)
    with pytest.raises(EvidenceError, match="config file missing.toml not found"):
        plan_training(["--config_file", "missing.toml"], base)
