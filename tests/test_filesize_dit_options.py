"""The DiT file-size model with the network_args that add or remove modules: FLUX with modulation off
(img_mod_dim/txt_mod_dim/single_mod_dim = 0), FLUX in_dims (embedders at their own ranks), Anima's
train_llm_adapter. Files are written here from the module lists as kohya would save them (header-only fixtures with
the real sizes), independently of the size model, and infer-dim must find them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dit_loras import kohya, write_lora  # noqa: E402

from lora_audit.cli import main  # noqa: E402
from lora_audit.kohya import filesize_dit  # noqa: E402
from lora_audit.kohya.lora_layout_dit import anima_modules, flux_modules  # noqa: E402


def _candidates(size: int, arch: str) -> list[dict]:
    out = CliRunner().invoke(main, ["infer-dim", str(size), "--arch", arch, "--json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)["candidates"]


def _best(size: int, arch: str) -> dict:
    return _candidates(size, arch)[0]


def _exact(cands: list[dict], dim: int, precision: str, args: list[str]) -> int:
    """The expected size without kohya's typical metadata, of the candidate with these settings."""
    c = next(c for c in cands if (c["network_dim"], c["save_precision"], c["network_args"]) == (dim, precision, args))
    return c["expected_bytes"] - filesize_dit.fs.TYPICAL_METADATA_BYTES


def test_flux_without_modulation_modules(tmp_path):
    # lora_flux.create_network: type_dims identifiers ("img_mod",), ("txt_mod",), ("modulation",) at dim 0 skip the
    # double blocks' img_mod.lin / txt_mod.lin and the single blocks' modulation.lin
    mods = [m for m in flux_modules() if not m.name.endswith(("_mod_lin", "_modulation_lin"))]
    assert len(mods) == 19 * 8 + 38 * 2
    tensors, alphas = kohya(mods, 16, "BF16", 16.0)
    f = write_lora(tmp_path / "nomod.safetensors", tensors, None, alphas)
    layout = next(lo for lo, _ in filesize_dit.option_layouts("flux")
                  if "img_mod_dim=0" in lo.options and lo.text_encoders == "none")
    assert filesize_dit.exact_size(layout, 16, "bf16") == f.stat().st_size
    cands = _candidates(f.stat().st_size, "flux")
    no_mod = ["img_mod_dim=0", "txt_mod_dim=0", "single_mod_dim=0"]
    assert (cands[0]["network_dim"], cands[0]["network_args"]) == (16, no_mod)
    assert _exact(cands, 16, "bf16", no_mod) == f.stat().st_size


def test_flux_in_dims_embedders_at_their_own_ranks(tmp_path):
    # in_dims=[4,2,2,2,4]: img_in 4, time_in/vector_in/guidance_in 2 (MLPEmbedder in_layer + out_layer), txt_in 4
    ranks = {"lora_unet_img_in": 4, "lora_unet_txt_in": 4}
    for e in ("time_in", "vector_in", "guidance_in"):
        ranks[f"lora_unet_{e}_in_layer"] = ranks[f"lora_unet_{e}_out_layer"] = 2
    emb = [m for m in flux_modules(embedders=True) if m.name in ranks]
    assert len(emb) == 8
    tensors, alphas = kohya(flux_modules(), 32, "F16", 16.0)
    for m in emb:
        t, a = kohya([m], ranks[m.name], "F16", 1.0)
        tensors.update(t)
        alphas.update(a)
    f = write_lora(tmp_path / "in_dims.safetensors", tensors, None, alphas)
    cands = _candidates(f.stat().st_size, "flux")
    assert (cands[0]["network_dim"], cands[0]["network_args"]) == (32, ["in_dims=[4,2,2,2,4]"])
    assert _exact(cands, 32, "fp16", ["in_dims=[4,2,2,2,4]"]) == f.stat().st_size


def test_anima_with_the_llm_adapter(tmp_path):
    # lora_anima with train_llm_adapter=True also wraps LLMAdapterTransformerBlock: 6 blocks of model_dim 1024 with
    # self_attn and cross_attn (q/k/v/o_proj) and mlp.0 / mlp.2 (4096)
    adapter = []
    for b in range(6):
        p = f"lora_unet_llm_adapter_blocks_{b}"
        adapter += [(f"{p}_{att}_{x}_proj", 1024, 1024) for att in ("self_attn", "cross_attn") for x in "qkvo"]
        adapter += [(f"{p}_mlp_0", 1024, 4096), (f"{p}_mlp_2", 4096, 1024)]
    tensors, alphas = kohya(anima_modules(), 16, "BF16", 8.0)
    for name, cin, cout in adapter:
        tensors[f"{name}.lora_down.weight"] = ("BF16", [16, cin])
        tensors[f"{name}.lora_up.weight"] = ("BF16", [cout, 16])
        tensors[f"{name}.alpha"] = ("BF16", [])
        alphas[f"{name}.alpha"] = 8.0
    f = write_lora(tmp_path / "anima.safetensors", tensors, None, alphas)
    cands = _candidates(f.stat().st_size, "anima")
    assert (cands[0]["network_dim"], cands[0]["network_args"]) == (16, ["train_llm_adapter=True"])
    assert _exact(cands, 16, "bf16", ["train_llm_adapter=True"]) == f.stat().st_size
    # without the adapter the plain layout is still found first
    tensors, alphas = kohya(anima_modules(), 16, "BF16", 8.0)
    g = write_lora(tmp_path / "plain.safetensors", tensors, None, alphas)
    assert _best(g.stat().st_size, "anima")["network_args"] == []
