"""lora-audit weights: the factored spectrum against a dense SVD, effective rank, blocks, dead/NaN modules, series."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from lora_audit.cli import main
from lora_audit.weights import analyse_file, effective_ranks, epoch_key, spectrum_of_product

# real kohya networks.lora module names (SD1.5) with their real layer widths (out, in)
SD15 = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q": (320, 320),
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k": (640, 768),
    "lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_2": (1280, 5120),
    "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_out_0": (320, 320),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj": (768, 768),
    "lora_te_text_model_encoder_layers_11_mlp_fc2": (768, 3072),
}


def _lora(rng, out, inp, dim, true_rank=None, scale_te=1.0):
    """(down, up) with a product of exactly true_rank (default dim) although the factors are dim wide."""
    k = true_rank or dim
    down = rng.normal(size=(dim, inp)).astype(np.float32) * 0.01
    up = np.zeros((out, dim), np.float32)
    up[:, :k] = rng.normal(size=(out, k)) * 0.01 * scale_te
    return down, up


def write(path: Path, dim=8, alpha=4.0, true_rank=None, nan=None, dead=None, te_scale=1.0, seed=0,
          dtype=np.float32) -> Path:
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, (out, inp) in SD15.items():
        down, up = _lora(rng, out, inp, dim, true_rank, te_scale if name.startswith("lora_te") else 1.0)
        if name == dead:
            up[:] = 0
        if name == nan:
            up[0, 0] = np.nan
        tensors[f"{name}.lora_down.weight"] = down.astype(dtype)
        tensors[f"{name}.lora_up.weight"] = up.astype(dtype)
        tensors[f"{name}.alpha"] = np.array(alpha, dtype=np.float32)
    save_file(tensors, str(path), metadata={"ss_network_dim": str(dim), "ss_network_alpha": str(alpha)})
    return path


@pytest.mark.parametrize("method", ["gram", "qr"])
@pytest.mark.parametrize("shape", [(300, 8, 500), (40, 16, 30), (5, 4, 1000), (64, 1, 64), (200, 32, 400)])
def test_factored_spectrum_matches_dense_svd(shape, method):
    rng = np.random.default_rng(1)
    out, r, inp = shape
    up, down = rng.normal(size=(out, r)), rng.normal(size=(r, inp))
    got = spectrum_of_product(up, down, 0.25, method)
    dense = np.linalg.svd(0.25 * up @ down, compute_uv=False)
    np.testing.assert_allclose(np.sort(got)[::-1], dense[: len(got)], rtol=1e-9, atol=1e-9)
    assert np.allclose(dense[len(got):], 0, atol=1e-9)


@pytest.mark.parametrize("method", ["gram", "qr"])
def test_low_rank_inside_wide_factors(method):
    """A rank-3 update stored at dim 32: three singular values, the rest ~0 (gram: below 1e-7 of the top)."""
    rng = np.random.default_rng(2)
    up = np.zeros((500, 32))
    up[:, :3] = rng.normal(size=(500, 3))
    down = rng.normal(size=(32, 700))
    got = np.sort(spectrum_of_product(up, down, 1.0, method))[::-1]
    dense = np.linalg.svd(up @ down, compute_uv=False)
    np.testing.assert_allclose(got[:3], dense[:3], rtol=1e-9)
    assert got[3] < 1e-7 * got[0]
    assert effective_ranks(got)[:2] == (3, 3)


def test_effective_ranks():
    assert effective_ranks(np.array([1.0, 1.0, 1.0, 0.0])) == pytest.approx((3, 3, 3.0))
    r90, r99, ent = effective_ranks(np.array([10.0, 2.0, 0.1]))
    assert (r90, r99) == (1, 2)
    assert 1 < ent < 2


def test_module_norm_and_rank_against_dense(tmp_path):
    f = write(tmp_path / "a.safetensors", dim=32, alpha=16, true_rank=3)
    rep = analyse_file(f)
    from safetensors.numpy import load_file

    t = load_file(str(f))
    name = "lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_2"
    m = next(m for m in rep.modules if m.name == name)
    dense = 0.5 * t[name + ".lora_up.weight"].astype(np.float64) @ t[name + ".lora_down.weight"].astype(np.float64)
    assert m.norm == pytest.approx(np.linalg.norm(dense), rel=1e-6)
    assert m.rank == 32 and m.scale == 0.5 and m.shape == (1280, 5120)
    assert m.rank99 <= 3 and m.rank90 <= 3  # a rank-3 update in a dim-32 file
    assert rep.summary()["median_rank99"] <= 3
    assert (m.group, m.block) == ("mid", "mid_block")


def test_blocks_groups_and_text_encoder_share(tmp_path):
    rep = analyse_file(write(tmp_path / "a.safetensors", te_scale=10.0))
    groups = {g["group"]: g for g in rep.groups("group")}
    assert set(groups) == {"down", "mid", "up", "te"}
    assert groups["down"]["modules"] == 2
    assert rep.text_encoder_share > 0.8  # the text encoder's factors are 10x larger
    assert sum(g["energy_share"] for g in groups.values()) == pytest.approx(1.0)
    blocks = {b["block"] for b in rep.groups("block")}
    assert {"down_blocks_0", "down_blocks_1", "up_blocks_3", "te_layers_0", "te_layers_11"} <= blocks


def test_dead_and_nan_modules(tmp_path):
    dead = "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn1_to_out_0"
    nan = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    f = write(tmp_path / "a.safetensors", nan=nan, dead=dead)
    s = analyse_file(f).summary()
    assert s["dead"] == [dead] and s["nonfinite"] == [nan]
    r = CliRunner().invoke(main, ["weights", str(f)])
    assert r.exit_code == 0, r.output
    assert "NaN/inf modules: 1 (" + nan in r.output
    assert "dead (all-zero) modules: 1" in r.output


def test_bf16_and_fp16_files_read(tmp_path):
    import torch  # numpy has no bf16: write it with torch's safetensors and read it with the bit-shift reader
    from safetensors.torch import save_file as save_torch

    f32 = write(tmp_path / "f32.safetensors", dim=4)
    from safetensors.numpy import load_file

    t = {k: torch.from_numpy(v.copy()).to(torch.bfloat16) if v.ndim else torch.from_numpy(v.copy())
         for k, v in load_file(str(f32)).items()}
    save_torch(t, str(tmp_path / "bf16.safetensors"))
    a, b = analyse_file(f32), analyse_file(tmp_path / "bf16.safetensors")
    assert b.summary()["norm"] == pytest.approx(a.summary()["norm"], rel=2e-2)
    c = analyse_file(write(tmp_path / "f16.safetensors", dim=4, dtype=np.float16))
    assert c.summary()["norm"] == pytest.approx(a.summary()["norm"], rel=1e-2)


def test_conv_locon_reshaped(tmp_path):
    rng = np.random.default_rng(3)
    name = "lora_unet_down_blocks_0_resnets_0_conv1"  # a 3x3 conv (conv_dim)
    down = rng.normal(size=(4, 320, 3, 3)).astype(np.float32)
    up = rng.normal(size=(320, 4, 1, 1)).astype(np.float32)
    save_file({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up,
               f"{name}.alpha": np.array(2.0, np.float32)}, str(tmp_path / "c.safetensors"))
    m = analyse_file(tmp_path / "c.safetensors").modules[0]
    dense = np.linalg.svd(0.5 * up.reshape(320, 4).astype(np.float64) @ down.reshape(4, -1), compute_uv=False)[:4]
    np.testing.assert_allclose(m.spectrum, dense, rtol=1e-5)
    assert m.shape == (320, 320 * 9)


def test_loha_exact(tmp_path):
    rng = np.random.default_rng(4)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    w = {k: rng.normal(size=s).astype(np.float32) for k, s in
         (("hada_w1_a", (320, 4)), ("hada_w1_b", (4, 320)), ("hada_w2_a", (320, 4)), ("hada_w2_b", (4, 320)))}
    save_file({**{f"{name}.{k}": v for k, v in w.items()}, f"{name}.alpha": np.array(2.0, np.float32)},
              str(tmp_path / "h.safetensors"))
    rep = analyse_file(tmp_path / "h.safetensors")
    m = rep.modules[0]
    dense = 0.5 * (w["hada_w1_a"].astype(np.float64) @ w["hada_w1_b"]) * (w["hada_w2_a"].astype(np.float64)
                                                                           @ w["hada_w2_b"])
    sv = np.linalg.svd(dense, compute_uv=False)
    assert m.kind == "LoHa" and m.norm == pytest.approx(np.linalg.norm(dense), rel=1e-6)
    np.testing.assert_allclose(m.spectrum[:16], sv[:16], rtol=1e-6)
    assert m.rank99 <= 16  # rank of a Hadamard product <= 4*4


def test_lokr_exact(tmp_path):
    rng = np.random.default_rng(5)
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    w1 = rng.normal(size=(4, 4)).astype(np.float32)
    w2a, w2b = rng.normal(size=(80, 2)).astype(np.float32), rng.normal(size=(2, 80)).astype(np.float32)
    save_file({f"{name}.lokr_w1": w1, f"{name}.lokr_w2_a": w2a, f"{name}.lokr_w2_b": w2b,
               f"{name}.alpha": np.array(1.0, np.float32)}, str(tmp_path / "k.safetensors"))
    m = analyse_file(tmp_path / "k.safetensors").modules[0]
    dense = 0.5 * np.kron(w1.astype(np.float64), w2a.astype(np.float64) @ w2b)
    sv = np.linalg.svd(dense, compute_uv=False)
    assert m.kind == "LoKr" and m.shape == (320, 320)
    np.testing.assert_allclose(np.sort(m.spectrum)[::-1][:8], sv[:8], rtol=1e-6)
    assert m.norm == pytest.approx(np.linalg.norm(dense), rel=1e-6)


def test_peft_without_alpha_scale_one(tmp_path):
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(4, 64)).astype(np.float32), rng.normal(size=(64, 4)).astype(np.float32)
    save_file({"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": a,
               "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": b},
              str(tmp_path / "p.safetensors"))
    m = analyse_file(tmp_path / "p.safetensors").modules[0]
    assert m.scale == 1.0 and m.norm == pytest.approx(np.linalg.norm(b.astype(np.float64) @ a), rel=1e-6)
    assert m.group == "down"


def test_flux_blocks(tmp_path):
    rng = np.random.default_rng(7)
    t = {}
    for name in ("lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_single_blocks_3_linear2",
                 "lora_te1_text_model_encoder_layers_0_mlp_fc1"):
        t[f"{name}.lora_down.weight"] = rng.normal(size=(2, 64)).astype(np.float32)
        t[f"{name}.lora_up.weight"] = rng.normal(size=(48, 2)).astype(np.float32)
    save_file(t, str(tmp_path / "f.safetensors"))
    groups = {m.name: (m.group, m.block) for m in analyse_file(tmp_path / "f.safetensors").modules}
    assert groups["lora_unet_double_blocks_0_img_attn_qkv"] == ("double", "double_blocks_0")
    assert groups["lora_unet_single_blocks_3_linear2"] == ("single", "single_blocks_3")
    assert groups["lora_te1_text_model_encoder_layers_0_mlp_fc1"][0] == "te1"


def test_epoch_names():
    assert epoch_key("out/my-lora-000003.safetensors") == ("my-lora", 3, "epoch")
    assert epoch_key("my-lora-step00000500.safetensors") == ("my-lora", 500, "step")
    assert epoch_key("my-lora.safetensors") == ("my-lora", None, "final")


def test_cli_trajectory_and_json(tmp_path):
    files = [write(tmp_path / f"run-00000{i}.safetensors", seed=i, te_scale=i) for i in (1, 2)]
    files.append(write(tmp_path / "run.safetensors", seed=3, te_scale=3))
    r = CliRunner().invoke(main, ["weights", *map(str, reversed(files))])
    assert r.exit_code == 0, r.output
    assert "trajectory of" in r.output and "epoch 1" in r.output
    lines = r.output.split("trajectory of", 1)[1].splitlines()
    ats = [line.split()[0] + (" " + line.split()[1] if line.startswith("epoch") else "") for line in lines[3:6]]
    assert ats == ["epoch 1", "epoch 2", "final"]
    r = CliRunner().invoke(main, ["weights", "--json", *map(str, files)])
    data = json.loads(r.output)
    rows = next(iter(data["trajectories"].values()))
    shares = [row["text_encoder_share"] for row in rows]
    assert shares == sorted(shares)  # the text encoder's share grows with te_scale 1, 2, 3
    assert len(data["files"][0]["modules"]) == len(SD15)
    assert len(data["files"][0]["modules"][0]["spectrum"]) == 8


def test_bad_input_one_line(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    r = CliRunner().invoke(main, ["weights", str(p)])
    assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1
    f = write(tmp_path / "cut.safetensors")
    f.write_bytes(f.read_bytes()[:-1000])
    r = CliRunner().invoke(main, ["weights", str(f)])
    assert r.exit_code == 2 and "error: " in r.output and "Traceback" not in r.output


def test_inspect_weights(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    write(run / "run1.safetensors", nan="lora_te_text_model_encoder_layers_0_self_attn_q_proj")
    r = CliRunner().invoke(main, ["inspect", "--weights", str(run)])
    assert r.exit_code == 0, r.output
    assert "weights:" in r.output and "NaN/inf modules: 1" in r.output
    r = CliRunner().invoke(main, ["inspect", "--weights", "--json", str(run)])
    data = json.loads(r.output)
    w = data["runs"][0]["weights"][0]
    assert w["summary"]["nonfinite"] == ["lora_te_text_model_encoder_layers_0_self_attn_q_proj"]


def _run(tmp_path: Path, name: str, verdict: str, dim: int, **kw) -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "run.toml").write_text(f'name = "{name}"\nverdict = "{verdict}"\n')
    (run / "config.toml").write_text(f'pretrained_model_name_or_path = "x.safetensors"\nnetwork_dim = {dim}\n'
                                     f'network_alpha = {dim // 2}\n')
    write(run / f"{name}.safetensors", dim=dim, alpha=dim / 2, **kw)
    return run


def test_audit_weights_findings(tmp_path):
    good = _run(tmp_path, "good", "good", 8)
    nan = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    bad = _run(tmp_path, "bad", "bad", 32, true_rank=3, nan=nan)  # dim 32, the updates are rank 3
    r = CliRunner().invoke(main, ["audit", "--json", "--weights", str(good), str(bad)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    ids = {f["id"]: f for f in data["pairs"][0]["findings"]}
    assert ids["weights-nonfinite"]["level"] == "primary" and nan in ids["weights-nonfinite"]["title"]
    assert ids["rank-unused"]["title"] == "network_dim 32, but the updates use an effective rank of ~3"
    dim = [f for f in data["pairs"][0]["findings"] if f["kind"] == "change" and "network_dim" in f["params"]]
    assert dim and all(f["level"] != "primary" and "effective rank of ~3 of 32" in f["rationale"] for f in dim)
    assert data["dynamics"]["bad"]["weights"]["stored_rank"] == 32
    # without --weights the LoRA weights are not read (the light path)
    data = json.loads(CliRunner().invoke(main, ["audit", "--json", str(good), str(bad)]).output)
    assert "rank-unused" not in {f["id"] for f in data["pairs"][0]["findings"]}
    out = tmp_path / "r.md"
    r = CliRunner().invoke(main, ["audit", "--weights", str(good), str(bad), "--out", str(out)])
    assert r.exit_code == 0, r.output
    section = out.read_text().split("## Training dynamics", 1)[1]
    assert "bad.safetensors: dim 32, effective rank ~3 (99% energy)" in section and "1 NaN/inf modules" in section


def test_folder_of_epoch_files(tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    for i in (1, 2, 3):
        write(out / f"mylora-00000{i}.safetensors", seed=i)
    r = CliRunner().invoke(main, ["weights", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["trajectories"][str(out / "mylora")]
    assert [row["at"] for row in rows] == ["epoch 1", "epoch 2", "epoch 3"]
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["weights", str(empty)])
    assert r.exit_code == 2 and "no .safetensors file in this folder" in r.output


def test_inspect_weights_trajectory_of_a_run(tmp_path):
    run = tmp_path / "run1"
    run.mkdir()
    for i in (1, 2):
        write(run / f"run1-00000{i}.safetensors", seed=i)
    write(run / "run1.safetensors", seed=3)
    r = CliRunner().invoke(main, ["inspect", "--weights", str(run)])
    assert r.exit_code == 0, r.output
    assert "trajectory of" in r.output and "epoch 2" in r.output
    data = json.loads(CliRunner().invoke(main, ["inspect", "--weights", "--json", str(run)]).output)
    rows = next(iter(data["runs"][0]["weights_trajectories"].values()))
    assert [row["at"] for row in rows] == ["epoch 1", "epoch 2", "final"]


def test_tucker_skipped_and_dora_noted(tmp_path):
    rng = np.random.default_rng(8)
    loha = "lora_unet_down_blocks_0_resnets_0_conv1"
    dora = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    t = {f"{loha}.{k}": rng.normal(size=s).astype(np.float32) for k, s in
         (("hada_w1_a", (4, 320)), ("hada_w1_b", (4, 320)), ("hada_w2_a", (4, 320)), ("hada_w2_b", (4, 320)),
          ("hada_t1", (4, 4, 3, 3)), ("hada_t2", (4, 4, 3, 3)))}
    save_file(t, str(tmp_path / "t.safetensors"))
    m = analyse_file(tmp_path / "t.safetensors").modules[0]
    assert m.status == "skipped" and "Tucker" in m.note
    save_file({f"{dora}.lora_down.weight": rng.normal(size=(4, 320)).astype(np.float32),
               f"{dora}.lora_up.weight": rng.normal(size=(320, 4)).astype(np.float32),
               f"{dora}.dora_scale": np.ones((1, 320), np.float32)}, str(tmp_path / "d.safetensors"))
    rep = analyse_file(tmp_path / "d.safetensors")
    assert rep.modules[0].kind == "DoRA" and rep.modules[0].status == "ok"
    assert any("dora_scale" in n for n in rep.notes)
