"""lora-audit compare on tiny SD1.x / SDXL models with LoRAs trained by the builtin trainer: exact fairness
(strength 0 == base, identical bytes on re-run), exports, findings, errors, resume, studies."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from train_helpers import tiny_model, toy_dataset, write_config  # noqa: E402

from lora_audit.commands.compare import compare  # noqa: E402
from lora_audit.compare.run import run_comparison  # noqa: E402
from lora_audit.compare.spec import Settings, parse_lora  # noqa: E402

FAST = ["--steps", "2", "--size", "64x64", "--seeds", "1,2", "--quiet"]


def _train(folder: Path, arch: str) -> Path:
    cfg = write_config(folder, tiny_model(arch), toy_dataset().dataset_toml)
    r = subprocess.run([sys.executable, "-m", "lora_audit.train", "--config_file", str(cfg)], capture_output=True,
                       text=True, cwd=folder)
    assert r.returncode == 0, r.stderr
    return folder / "out" / "toy.safetensors"


@pytest.fixture(scope="module")
def lora15(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("lora15"), "sd15")


@pytest.fixture(scope="module")
def strong15(lora15, tmp_path_factory) -> Path:
    """The trained LoRA with its up weights ×40: two training steps barely move a model; this one visibly does."""
    sd = load_file(lora15)
    sd = {k: v * 40 if k.endswith("lora_up.weight") else v for k, v in sd.items()}
    p = tmp_path_factory.mktemp("strong") / "strong.safetensors"
    save_file(sd, p, metadata={"ss_base_model_version": "sd_v1"})
    return p


@pytest.fixture(scope="module")
def weak15(lora15, tmp_path_factory) -> Path:
    """The trained LoRA with its up weights ×0.05: loaded, matched, and far too weak to see."""
    sd = load_file(lora15)
    sd = {k: v * 0.05 if k.endswith("lora_up.weight") else v for k, v in sd.items()}
    p = tmp_path_factory.mktemp("weak") / "toy.safetensors"
    save_file(sd, p, metadata={"ss_base_model_version": "sd_v1"})
    return p


@pytest.fixture(scope="module")
def run15(weak15, strong15, tmp_path_factory):
    out = tmp_path_factory.mktemp("run15")
    r = CliRunner().invoke(compare, ["--base", str(tiny_model("sd15")), "--lora", f"{weak15}@0,1",
                                     "--lora", f"{strong15}@1", "--prompt", "a knight", "--prompt", "pixel punk",
                                     "--out", str(out), "--batch", "2", *FAST])
    assert r.exit_code == 0, r.output
    return out, r.output


def _pixels(p: Path):
    with Image.open(p) as im:
        return im.convert("RGB").tobytes()


def test_strength_zero_is_bit_identical_to_base(run15):
    out, _ = run15
    for p in (1, 2):
        for seed in (1, 2):
            base = out / f"images/p0{p}/base/seed{seed}.png"
            zero = out / f"images/p0{p}/toy_0/seed{seed}.png"
            assert _pixels(base) == _pixels(zero)
            assert _pixels(base) != _pixels(out / f"images/p0{p}/strong_1/seed{seed}.png")


def test_rerun_gives_identical_png_bytes(run15, weak15, strong15, tmp_path):
    out, _ = run15
    r = CliRunner().invoke(compare, ["--base", str(tiny_model("sd15")), "--lora", f"{weak15}@0,1",
                                     "--lora", f"{strong15}@1", "--prompt", "a knight", "--prompt", "pixel punk",
                                     "--out", str(tmp_path), "--batch", "2", *FAST])
    assert r.exit_code == 0, r.output
    first = sorted(p.relative_to(out) for p in out.glob("images/**/*.png"))
    assert len(first) == 2 * 2 * 4  # prompts × seeds × (base, toy@0, toy@1, strong@1)
    assert first == sorted(p.relative_to(tmp_path) for p in tmp_path.glob("images/**/*.png"))
    for rel in first:
        assert (out / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_png_carries_a1111_parameters(run15):
    out, _ = run15
    with Image.open(out / "images/p01/toy_1/seed2.png") as im:
        text = im.text["parameters"]
    first, fields = text.splitlines()
    assert first == "a knight <lora:toy:1>"
    for part in ("Steps: 2", "Seed: 2", "Size: 64x64", "CFG scale: 7", "Sampler: PLMS", 'Lora hashes: "toy: '):
        assert part in fields


def test_grid_has_a_row_per_model_and_a_column_per_seed(run15):
    out, _ = run15
    with Image.open(out / "grid-p01.png") as g:
        w, h = g.size
    # 64 px images shown at 128 px: 4 rows under a 34 px header, 2 columns beside the label column
    assert h == 34 + 4 * 128 and (w - 2 * 128) >= 120


def test_exports_follow_the_guide_schema(run15):
    out, output = run15
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    guide = ["comparison_id", "prompt", "seed", "model_name", "base_model", "lora", "lora_strength",
             "generation_time_s", "winner", "notes", "completed_at"]
    assert list(rows[0])[:11] == guide
    assert {"image", "distance_to_base", "png_bytes", "jpeg_bytes", "palette", "grid_k", "grid_fit"} <= set(rows[0])
    assert len(rows) == 16
    data = json.loads((out / "comparison.json").read_text())
    assert set(data) >= {"metadata", "comparisons", "statistics"}
    assert data["metadata"]["total_comparisons"] == 4  # 2 prompts × 2 seeds
    assert [m["name"] for m in data["comparisons"][0]["models"]] == ["base", "toy @0", "toy @1", "strong @1"]
    models = {m["model_name"]: m for m in data["statistics"]["models"]}
    t = models["base"]["timing"]
    assert t["images"] == 4 and t["min_s"] <= t["mean_s"] <= t["max_s"] and t["images_per_s"] > 0
    toy = models["toy @1"]
    assert toy["modules_matched"] == toy["modules_in_file"] == 210 and toy["modules_unmatched"] == 0
    assert toy["lora_parameters"] > 0 and toy["lora_size_bytes"] > 0
    assert "toy: 210 of 210 modules matched, 0 unmatched" in output
    assert (out / "report.md").read_text().count("![grid") == 2


def test_weak_lora_gets_no_visible_effect_finding_and_strong_one_moves_furthest(run15):
    out, output = run15
    data = json.loads((out / "comparison.json").read_text())
    findings = data["findings"]
    assert any(f.startswith("NO VISIBLE EFFECT: toy:") for f in findings)
    assert not any("strong" in f for f in findings)
    assert data["statistics"]["furthest_from_base"] == "strong @1"
    assert "NO VISIBLE EFFECT: toy" in output


@pytest.mark.parametrize("args, message", [
    (["--lora", "{corrupt}"], "safetensors"),
    (["--lora", "{lora15}@9"], "out of range"),
    (["--prompts", "{empty}"], "has no prompts"),
    (["--lora", "{missing}"], "not found"),
])
def test_bad_inputs_give_one_line_errors(args, message, lora15, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    empty = tmp_path / "prompts.txt"
    empty.write_text("# nothing\n\n")
    args = [a.format(corrupt=corrupt, lora15=lora15, empty=empty, missing=tmp_path / "nope.safetensors")
            for a in args]
    base = ["--base", str(tiny_model("sd15")), "--out", str(tmp_path / "o"), *FAST]
    if "--prompts" not in args:
        base += ["--prompt", "x"]
    r = CliRunner().invoke(compare, base + args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_interrupted_comparison_keeps_images_and_resumes(lora15, tmp_path):
    s = Settings(base=tiny_model("sd15"), prompts=["a knight"], seeds=[1, 2, 3], steps=2, width=64, height=64,
                 loras=[parse_lora(f"{lora15}@1")])

    def stop_after_four(done, total, what, eta):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_comparison(s, tmp_path, stop_after_four)
    kept = {p: p.read_bytes() for p in tmp_path.glob("images/**/*.png")}
    assert len(kept) == 4
    cmp = run_comparison(s, tmp_path)
    assert cmp.resumed == 4 and len(cmp.records) == 6
    assert all(p.read_bytes() == b for p, b in kept.items())


@pytest.fixture(scope="module")
def lora_xl(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("loraxl"), "sdxl")


def test_lora_of_another_architecture_is_refused(lora_xl, tmp_path):
    r = CliRunner().invoke(compare, ["--base", str(tiny_model("sd15")), "--lora", str(lora_xl), "--prompt", "x",
                                     "--out", str(tmp_path), *FAST])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"error: {lora_xl}: LoRA is for sdxl but the base model is sd15: it cannot be applied"]
    assert not list(tmp_path.glob("images/**/*.png"))


def test_sdxl_comparison_strength_zero_matches_base(lora_xl, tmp_path):
    r = CliRunner().invoke(compare, ["--base", str(tiny_model("sdxl")), "--lora", f"{lora_xl}@0,1", "--prompt",
                                     "a knight", "--out", str(tmp_path), "--scheduler", "euler_a", "--json", *FAST])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["metadata"]["base_model"]["arch"] == "sdxl"
    toy = next(m for m in data["statistics"]["models"] if m["model_name"] == "toy @1")
    assert toy["modules_matched"] == toy["modules_in_file"] == 278
    for seed in (1, 2):
        assert _pixels(tmp_path / f"images/p01/base/seed{seed}.png") == \
            _pixels(tmp_path / f"images/p01/toy_0/seed{seed}.png")


def test_study_compares_every_variant_and_epoch(lora15, strong15, tmp_path):
    study = tmp_path / "study"
    (study).mkdir()
    (study / "study.toml").write_text('good = "a"\nbad = "b"\nvariants = ["control", "v1", "v2"]\n')
    (tmp_path / "prompts.txt").write_text("a knight, pixel art --n blurry --d 5\n")  # kohya sample prompt syntax
    for vid, src in (("control", lora15), ("v1", strong15)):
        d = study / vid / "output"
        d.mkdir(parents=True)
        shutil.copy(src, d / f"toy-{vid}.safetensors")
        shutil.copy(src, d / f"toy-{vid}-000001.safetensors")
        (study / vid / "config.toml").write_text(
            f'pretrained_model_name_or_path = "{tiny_model("sd15")}"\noutput_dir = "output"\n'
            f'output_name = "toy-{vid}"\nsample_prompts = "{tmp_path / "prompts.txt"}"\n')
    (study / "v2").mkdir()  # not trained yet
    r = CliRunner().invoke(compare, ["--study", str(study), "--epochs", "--json", *FAST])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [m["model_name"] for m in data["statistics"]["models"]] == [
        "base", "control e1 @1", "control @1", "v1 e1 @1", "v1 @1"]
    assert data["metadata"]["settings"]["prompts"] == ["a knight, pixel art"]
    assert (study / "compare" / "comparison.json").is_file()
    assert "note: no trained LoRA yet for: v2" in r.stderr


def test_option_parsing():
    from lora_audit.compare.spec import parse_seeds, parse_size
    from lora_audit.errors import EvidenceError

    assert parse_lora("a@b/x.safetensors@0,0.5").strengths == (0.0, 0.5)
    assert str(parse_lora("a@b/x.safetensors").path) == "a@b/x.safetensors"
    assert parse_seeds("42-44,7") == [42, 43, 44, 7]
    assert parse_size("64x32") == (64, 32)
    for bad in (lambda: parse_size("63x64"), lambda: parse_seeds("x"), lambda: parse_lora("a.safetensors@-5")):
        with pytest.raises(EvidenceError):
            bad()


def test_pixel_grid_fit_finds_the_upscale_factor():
    import numpy as np

    from lora_audit.compare.metrics import best_grid, palette_size

    sprite = np.random.default_rng(0).integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
    art = np.repeat(np.repeat(sprite, 4, axis=0), 4, axis=1)  # 16×16 pixel art shown at 64×64
    assert best_grid(art) == (4, 1.0)
    assert palette_size(art) == palette_size(sprite) <= 256
    noise = np.random.default_rng(1).integers(0, 255, size=(64, 64, 3), dtype=np.uint8)
    k, fit = best_grid(noise)
    assert fit < 0.6


def test_command_module_imports_no_heavy_library():
    code = ("import sys, lora_audit.commands.compare, lora_audit.compare.study; "
            "print(sorted(m for m in ('torch', 'diffusers', 'numpy', 'PIL') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stderr


def _tiny_clip(folder: Path) -> Path:
    from transformers import CLIPConfig, CLIPModel

    from lora_audit.train.tokenizer import write_tokenizer

    vocab = write_tokenizer(folder)
    torch.manual_seed(0)
    cfg = CLIPConfig(text_config={"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
                                  "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 77},
                     vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                                    "num_hidden_layers": 2, "num_attention_heads": 4},
                     projection_dim=16)
    CLIPModel(cfg).save_pretrained(folder)
    return folder


def test_clip_score_and_frechet_distance_with_a_tiny_local_clip(strong15, tmp_path):
    clip = _tiny_clip(tmp_path / "clip")
    ref = tmp_path / "ref"
    ref.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (60 * i, 20, 200 - 50 * i)).save(ref / f"r{i}.png")
    out = tmp_path / "out"
    r = CliRunner().invoke(compare, ["--base", str(tiny_model("sd15")), "--lora", str(strong15), "--prompt",
                                     "a knight", "--out", str(out), "--clip-model", str(clip), "--reference",
                                     str(ref), "--json", *FAST])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    for m in data["statistics"]["models"]:
        assert 0 <= m["metrics"]["clip_score"] <= 100
        assert m["fd_clip"] >= 0
    assert "clip_score" in next(csv.DictReader((out / "comparison.csv").open()))
    assert "## CLIP (local weights)" in (out / "report.md").read_text()


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_shift():
    import numpy as np

    from lora_audit.compare.clip import frechet_distance

    a = np.random.default_rng(0).normal(size=(50, 4))
    assert abs(frechet_distance(a, a)) < 1e-8
    assert abs(frechet_distance(a, a + 3) - 4 * 9) < 1e-6  # same covariance: only ‖Δμ‖² = 4 × 3²


@pytest.mark.slow
def test_epochs_compares_every_epoch_and_picks_the_best(lora15, strong15, weak15, tmp_path):
    """kohya's per-epoch saves beside a LoRA, compared on the same seeds: a row per epoch, the metric per epoch and
    the best epoch with its rule, in the output, comparison.json and report.md."""
    run = tmp_path / "output"
    run.mkdir()
    for name, src in (("toy-000001", weak15), ("toy-000002", strong15), ("toy", lora15)):
        shutil.copy(src, run / f"{name}.safetensors")
    clip = _tiny_clip(tmp_path / "clip")
    out = tmp_path / "cmp"
    args = ["--base", str(tiny_model("sd15")), "--lora", str(run / "toy.safetensors"), "--epochs", "--prompt",
            "a knight", "--out", str(out), "--clip-model", str(clip), *FAST]
    r = CliRunner().invoke(compare, args)
    assert r.exit_code == 0, r.output
    data = json.loads((out / "comparison.json").read_text())
    assert [m["model_name"] for m in data["statistics"]["models"]] == ["base", "toy e1 @1", "toy e2 @1", "toy @1"]
    [series] = data["epochs"]
    assert series["metric"] == "clip_score" and "highest mean CLIP score" in series["rule"]
    assert "ties go to the earlier epoch" in series["rule"]
    scores = {e["model_name"]: e["metric"] for e in series["epochs"]}
    assert [e["epoch"] for e in series["epochs"]] == [1, 2, None]
    means = {m["model_name"]: m["metrics"]["clip_score"] for m in data["statistics"]["models"]}
    assert scores == {k: means[k] for k in scores}
    top = max(scores.values())
    best = next(e for e in series["epochs"] if e["metric"] == top)  # the first (earliest) with the top score
    assert (series["best"], series["best_epoch"]) == (best["model_name"], best["epoch"])
    assert f"best epoch of toy @1: {series['best']} (highest mean CLIP score" in r.output
    report = (out / "report.md").read_text()
    assert "## Best epoch" in report and f"toy @1: **{series['best']}**" in report
