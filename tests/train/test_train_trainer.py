"""The builtin trainer end to end on tiny models: kohya-format files that diffusers loads, determinism, errors."""

import csv
import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from train_helpers import tiny_model, toy_dataset, write_config  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.kohya.lora_layout import modules  # noqa: E402
from lora_audit.train import noise as noise_module  # noqa: E402
from lora_audit.train.trainer import train  # noqa: E402

SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")


def run(folder, argv=(), **kw):
    return train(["--config_file", "config.toml", *argv], folder, echo=lambda s: None, progress=False, **kw)


def module_names(sd: dict) -> set[str]:
    return {k.rsplit(".", 2)[0] if k.endswith("weight") else k.rsplit(".", 1)[0] for k in sd}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """2 epochs of the toy dataset (4 batches each), a file per epoch, logging on."""
    folder = tmp_path_factory.mktemp("sd15")
    write_config(folder, tiny_model("sd15"), toy_dataset().dataset_toml, """
        max_train_epochs = 2
        save_every_n_epochs = 1
        save_precision = "fp16"
        logging_dir = "logs"
        lr_scheduler = "cosine_with_restarts"
        lr_scheduler_num_cycles = 2
        noise_offset = 0.05
        min_snr_gamma = 5.0
        """)
    return folder, run(folder)


def test_writes_one_file_per_epoch_and_the_final_one(trained):
    folder, result = trained
    assert [p.name for p in result.files] == ["toy-000001.safetensors", "toy.safetensors"]
    assert result.final == folder / "out" / "toy.safetensors" and result.steps == 8 and result.epochs == 2
    assert not list((folder / "out").glob(".*partial"))
    with safe_open(result.files[0], "pt") as f:
        assert f.metadata()["ss_epoch"] == "1" and f.metadata()["ss_steps"] == "4"


def test_file_has_kohya_keys_dtype_and_alpha(trained):
    _, result = trained
    sd = load_file(result.final)
    assert all(k.startswith(("lora_unet_", "lora_te_")) and k.endswith(SUFFIXES) for k in sd)
    assert {v.dtype for v in sd.values()} == {torch.float16}  # save_precision fp16, alphas included
    assert sd["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"].shape == (4, 32, 1, 1)
    assert sd["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"].shape == (32, 4)
    assert {v.item() for k, v in sd.items() if k.endswith(".alpha")} == {2.0}
    # the tiny model has SD1.x's block layout, so its UNet LoRA has exactly the real model's kohya modules (its
    # text encoder has 3 of CLIP-L's 12 layers)
    real = {m.name for m in modules("sd15")}
    names = module_names(sd)
    assert {n for n in names if "unet" in n} == {n for n in real if "unet" in n} and names <= real


def test_metadata_mirrors_kohya(trained):
    _, result = trained
    with safe_open(result.final, "pt") as f:
        md = f.metadata()
    assert md["ss_network_dim"] == "4" and md["ss_network_alpha"] == "2.0"
    assert md["ss_network_module"] == "networks.lora" and md["ss_base_model_version"] == "sd_v1"
    assert md["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert md["ss_learning_rate"] == "0.001" and md["ss_lr_scheduler"] == "cosine_with_restarts"
    assert md["ss_noise_offset"] == "0.05" and md["ss_min_snr_gamma"] == "5.0" and md["ss_seed"] == "7"
    assert md["ss_epoch"] == "2" and md["ss_steps"] == "8" and md["ss_num_epochs"] == "2"
    assert md["ss_mixed_precision"] == "no" and md["ss_output_name"] == "toy"
    assert float(md["ss_training_finished_at"]) >= float(md["ss_training_started_at"])
    assert md["ss_optimizer"] == "torch.optim.adamw.AdamW" and md["ss_session_id"].isdigit()
    (ds,) = json.loads(md["ss_datasets"])
    assert ds["num_train_images"] == 8 and ds["batch_size_per_device"] == 2 and ds["resolution"] == [64, 64]
    assert ds["subsets"][0]["num_repeats"] == 2 and ds["subsets"][0]["keep_tokens"] == 2
    assert json.loads(md["ss_tag_frequency"])["2_pixelpunk"]["pixel art"] == 4
    assert len(md["sshs_model_hash"]) == 64


def test_loss_per_step_in_the_logging_dir(trained):
    folder, result = trained
    assert result.log_dir.parent.parent == folder / "logs" and result.log_dir.name == "network_train"
    rows = list(csv.DictReader((result.log_dir / "loss.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert {"loss/current", "loss/average", "lr/textencoder", "lr/unet"} <= set(rows[0])
    assert all(float(r["loss/current"]) > 0 for r in rows)


def lora_weights_by_module(component) -> dict[str, torch.Tensor]:
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, mod in component.named_modules():
        if isinstance(mod, LoraLayer):
            (adapter,) = mod.lora_A.keys()
            out[name] = mod.lora_A[adapter].weight.detach()
    return out


def test_diffusers_loads_every_module_and_the_image_changes(trained):
    from diffusers import DiffusionPipeline

    _, result = trained
    pipe = DiffusionPipeline.from_pretrained(tiny_model("sd15"), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)

    def image():
        return pipe("pixel art, 24x24, punk", height=64, width=64, num_inference_steps=3, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images[0]

    base = image()
    pipe.load_lora_weights(str(result.final), adapter_name="toy")
    sd = load_file(result.final)
    loaded_unet, loaded_te = lora_weights_by_module(pipe.unet), lora_weights_by_module(pipe.text_encoder)
    # no unmatched keys: every module of the file became a LoRA layer of the pipeline, and no other did
    assert len(loaded_unet) + len(loaded_te) == len(module_names(sd))
    for name, weight in loaded_unet.items():  # ... with the file's weights at the right place
        key = "lora_unet_" + name.replace(".", "_") + ".lora_down.weight"
        assert torch.equal(weight.to(torch.float16), sd[key])
    assert abs(image() - base).max() > 1e-3


def test_same_seed_gives_identical_tensors(tmp_path):
    files = []
    for name in ("a", "b"):
        folder = tmp_path / name
        write_config(folder, tiny_model("sd15"), toy_dataset().dataset_toml, "multires_noise_iterations = 4\n"
                     "adaptive_noise_scale = 0.01\nnoise_offset = 0.1\ncaption_dropout_rate = 0.3\n")
        files.append(run(folder).final)
    a, b = load_file(files[0]), load_file(files[1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    trained_up = [k for k in a if k.endswith("lora_up.weight") and a[k].abs().sum() > 0]
    assert trained_up  # the LoRA moved from its zero init


def test_the_example_studys_flags_train_on_the_toy_dataset(tmp_path):
    """kohya flags as the good run of runs/examples/bespoke-punks has them, on a train_data_dir."""
    ds = toy_dataset()
    argv = ["--pretrained_model_name_or_path", str(tiny_model("sd15")), "--train_data_dir", str(ds.train_data_dir),
            "--output_dir", "out", "--output_name", "punks", "--save_model_as", "safetensors",
            "--network_module", "networks.lora", "--network_dim", "8", "--network_alpha", "4",
            "--resolution", "64,64", "--train_batch_size", "4", "--learning_rate", "0.0001", "--unet_lr", "0.0001",
            "--text_encoder_lr", "0.00005", "--optimizer_type", "AdamW8bit", "--lr_scheduler", "cosine_with_restarts",
            "--lr_scheduler_num_cycles", "3", "--min_snr_gamma", "5", "--mixed_precision", "fp16",
            "--save_precision", "fp16", "--gradient_checkpointing", "--cache_latents", "--cache_latents_to_disk",
            "--xformers", "--noise_offset", "0.1", "--multires_noise_iterations", "6",
            "--multires_noise_discount", "0.3", "--adaptive_noise_scale", "0.00357", "--caption_extension", ".txt",
            "--shuffle_caption", "--keep_tokens", "2", "--max_token_length", "225", "--bucket_reso_steps", "64",
            "--bucket_no_upscale", "--max_data_loader_n_workers", "1", "--max_train_epochs", "1",
            "--save_every_n_epochs", "1", "--seed", "42"]
    notes = []
    result = train(argv, tmp_path, echo=notes.append, progress=False)
    assert result.steps == 2 and result.final == tmp_path / "out" / "punks.safetensors"  # 4 images × 2 / batch 4
    assert any("AdamW8bit runs as torch AdamW" in n for n in notes)
    with safe_open(result.final, "pt") as f:
        md = f.metadata()
    assert md["ss_text_encoder_lr"] == "5e-05" and md["ss_max_token_length"] == "225"
    assert md["ss_multires_noise_iterations"] == "6" and md["ss_adaptive_noise_scale"] == "0.00357"
    assert md["ss_resolution"] == "64,64" and md["ss_shuffle_caption"] == "True" and md["ss_keep_tokens"] == "2"
    assert json.loads(md["ss_dataset_dirs"]) == {"2_pixelpunk": {"n_repeats": 2, "img_count": 4}}
    assert md["lora_audit.optimizer_requested"] == "AdamW8bit" and md["ss_mixed_precision"] == "fp16"


def test_ctrl_c_keeps_the_last_saved_epoch(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    write_config(folder, tiny_model("sd15"), toy_dataset().dataset_toml, "max_train_epochs = 3\n"
                 "save_every_n_epochs = 1\n")
    real = noise_module.noise_and_timesteps
    calls = []

    def interrupt_in_epoch_two(*a, **kw):
        calls.append(1)
        if len(calls) == 6:  # the 2nd batch of the 2nd epoch
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(noise_module, "noise_and_timesteps", interrupt_in_epoch_two)
    result = run(folder)
    assert result.interrupted and result.final is None
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["toy-000001.safetensors"]
    with safe_open(folder / "out" / "toy-000001.safetensors", "pt") as f:
        assert f.metadata()["ss_epoch"] == "1"


@pytest.mark.slow
def test_sdxl_unet_only_lora_uses_kohyas_sgm_names_and_loads(tmp_path):
    from diffusers import DiffusionPipeline

    write_config(tmp_path, tiny_model("sdxl"), toy_dataset().dataset_toml, "network_train_unet_only = true\n")
    result = run(tmp_path)
    sd = load_file(result.final)
    names = module_names(sd)
    assert all(n.startswith("lora_unet_") for n in names)
    real = {m.name for m in modules("sdxl")}
    assert names <= real and any("input_blocks_4_1_" in n for n in names) and any("middle_block_1" in n for n in names)
    with safe_open(result.final, "pt") as f:
        assert f.metadata()["ss_base_model_version"] == "sdxl_base_v1-0"
    out = CliRunner().invoke(main, ["inspect", "--json", str(result.final)])
    params = json.loads(out.stdout)["runs"][0]["params"]
    assert params["base_architecture"]["value"] == "sdxl" and params["network_train_unet_only"]["value"] is True
    pipe = DiffusionPipeline.from_pretrained(tiny_model("sdxl"), local_files_only=True)
    pipe.load_lora_weights(str(result.final))
    loaded = lora_weights_by_module(pipe.unet)
    assert len(loaded) == len(names) and not lora_weights_by_module(pipe.text_encoder)
    from lora_audit.train.lora import sgm_unet_name

    for name, weight in loaded.items():
        key = "lora_unet_" + sgm_unet_name(name, 2).replace(".", "_") + ".lora_down.weight"
        assert torch.equal(weight, sd[key])


def test_cli_refuses_unsupported_parameters_by_name(tmp_path):
    write_config(tmp_path, tiny_model("sd15"), toy_dataset().dataset_toml, 'loss_type = "huber"\n')
    out = CliRunner().invoke(main, ["train", "--config_file", str(tmp_path / "config.toml"), "--flip_aug"])
    assert out.exit_code == 2
    assert out.output.startswith("error: the builtin trainer does not implement: ") and out.output.count("\n") == 1
    assert "loss_type='huber'" in out.output and "flip_aug=True" in out.output


def test_cli_missing_dataset_folder_and_model_are_one_line_errors(tmp_path):
    (tmp_path / "ds.toml").write_text(f'[[datasets]]\nresolution = 64\n[[datasets.subsets]]\n'
                                      f'image_dir = "{tmp_path / "no-such-folder"}"\n')
    write_config(tmp_path, tiny_model("sd15"), tmp_path / "ds.toml")
    cli = CliRunner()
    out = cli.invoke(main, ["train", "--config_file", str(tmp_path / "config.toml")])
    assert out.exit_code == 2 and "no-such-folder not found" in out.output and out.output.count("\n") == 1
    out = cli.invoke(main, ["train", "--config_file", str(tmp_path / "config.toml"),
                            "--pretrained_model_name_or_path", str(tmp_path / "no-model")])
    assert out.exit_code == 2 and "no-model not found" in out.output and out.output.count("\n") == 1


def test_python_dash_m_entry_point_reports_errors_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lora_audit.train", "--config_file", "missing.toml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == "error: command line:1: config file missing.toml not found\n"


def test_cli_train_json_result(tmp_path):
    write_config(tmp_path, tiny_model("sd15"), toy_dataset().dataset_toml)
    out = CliRunner().invoke(main, ["train", "--config_file", str(tmp_path / "config.toml"), "--json",
                                    "--no-progress"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)  # notes and progress go to stderr with --json
    assert data["final"].endswith("toy.safetensors") and data["steps"] == 2 and not data["interrupted"]


def test_tensorboard_events_when_tensorboard_is_installed(trained):
    pytest.importorskip("tensorboard")
    _, result = trained
    assert list(result.log_dir.glob("events.out.tfevents.*"))


def test_inspect_reads_back_what_the_config_said(trained):
    folder, result = trained
    out = CliRunner().invoke(main, ["inspect", "--json", str(result.final)])
    assert out.exit_code == 0, out.output
    params = json.loads(out.stdout)["runs"][0]["params"]
    expected = {"network_dim": 4, "network_alpha": 2.0, "base_architecture": "sd15", "network_module": "networks.lora",
                "learning_rate": 0.001, "lr_scheduler": "cosine_with_restarts", "noise_offset": 0.05,
                "min_snr_gamma": 5.0, "seed": 7, "save_precision": "fp16", "max_train_epochs": 2,
                "train_batch_size": 2, "network_train_unet_only": False}
    assert {k: params[k]["value"] for k in expected} == expected


@pytest.mark.slow
def test_sigint_stops_with_exit_130_and_saved_epochs_intact(tmp_path):
    import signal

    write_config(tmp_path, tiny_model("sd15"), toy_dataset().dataset_toml, "max_train_epochs = 200\n"
                 "save_every_n_epochs = 1\n")
    # Ctrl-C as in a terminal: a test run in the background (`cmd &` in a script) inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler in the child; give the child the default disposition.
    proc = subprocess.Popen([sys.executable, "-m", "lora_audit.train", "--config_file", "config.toml",
                             "--no-progress"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("saving checkpoint"):
            proc.send_signal(signal.SIGINT)
            break
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(lines) + rest
    assert "interrupted at step" in rest
    files = sorted((tmp_path / "out").iterdir())
    assert files and all(p.name.startswith("toy-0") for p in files)  # per-epoch files only, no final, no partial
    for p in files:
        assert load_file(p)
