"""The trainer's parts: learning-rate schedules, optimizer groups, long-caption chunking, LoRA module names."""

import math
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from train_helpers import tiny_model  # noqa: E402

from lora_audit.errors import EvidenceError  # noqa: E402
from lora_audit.kohya.catalog import catalog  # noqa: E402
from lora_audit.train import lora, schedule, text  # noqa: E402


def kohya_args(**kw):
    values = {n: a.default for n, a in catalog().arguments.items()}
    values.update(kw)
    return SimpleNamespace(**values)


def lrs(args, steps=10):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1.0}])
    sched = schedule.make_scheduler(opt, args, steps)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_cosine_with_restarts_restarts_num_cycles_times():
    out = lrs(kohya_args(lr_scheduler="cosine_with_restarts", lr_scheduler_num_cycles=2))
    assert out[0] == pytest.approx(1.0) and out[5] == pytest.approx(1.0)  # second cycle starts at half way
    assert out[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.4)))
    assert out[4] < out[3] < out[2]


def test_warmup_as_a_fraction_and_linear_decay():
    out = lrs(kohya_args(lr_scheduler="linear", lr_warmup_steps=0.2))  # 20% of 10 steps: 2 warm-up steps
    assert out[:3] == pytest.approx([0.0, 0.5, 1.0])
    assert out[6] == pytest.approx((10 - 6) / 8)


def test_constant_refuses_warmup_as_kohya_does():
    with pytest.raises(EvidenceError, match="constant does not require"):
        lrs(kohya_args(lr_scheduler="constant", lr_warmup_steps=5))
    assert lrs(kohya_args(lr_scheduler="constant_with_warmup", lr_warmup_steps=4))[:5] == pytest.approx(
        [0, 0.25, 0.5, 0.75, 1.0])


def test_param_groups_follow_kohya_learning_rates():
    te, un = [torch.nn.Parameter(torch.zeros(1))], [torch.nn.Parameter(torch.zeros(1))]
    groups, names = schedule.param_groups(te, un, kohya_args(learning_rate=1e-4, text_encoder_lr=[5e-5]))
    assert names == ["textencoder", "unet"] and [g["lr"] for g in groups] == [5e-5, 1e-4]
    groups, names = schedule.param_groups(te, un, kohya_args(learning_rate=1e-4, text_encoder_lr=0.0, unet_lr=2e-4))
    assert names == ["unet"] and groups[0]["lr"] == 2e-4  # an lr of 0 leaves the group out


def test_optimizer_args_are_python_literals():
    p = torch.nn.Parameter(torch.zeros(1))
    opt, name, desc = schedule.make_optimizer([{"params": [p], "lr": 1e-3}], kohya_args(
        optimizer_args=["weight_decay=0.1", "betas=(0.9,0.99)"]))
    assert opt.defaults["weight_decay"] == 0.1 and opt.defaults["betas"] == (0.9, 0.99)
    assert name == "torch.optim.adamw.AdamW" and desc == "weight_decay=0.1,betas=(0.9, 0.99)"
    with pytest.raises(EvidenceError, match="not a Python literal"):
        schedule.make_optimizer([{"params": [p], "lr": 1e-3}], kohya_args(optimizer_args=["betas=nope"]))


def test_max_token_length_chunks_and_stitches_like_kohya():
    from transformers import CLIPTextModel, CLIPTokenizer

    m = tiny_model("sd15")
    tok = CLIPTokenizer.from_pretrained(m / "tokenizer")
    te = CLIPTextModel.from_pretrained(m / "text_encoder")
    ids = text.input_ids(tok, "pixel art, 24x24, punk", 225)
    assert ids.shape == (3, 77)
    assert (ids[:, 0] == tok.bos_token_id).all() and (ids[:, -1] == tok.eos_token_id).all()
    assert text.input_ids(tok, "pixel art", None).shape == (1, 77)
    batch = text.batch_ids(tok, ["a", "b"], 150)
    assert batch.shape == (2, 2, 77)
    with torch.no_grad():
        assert text.encode_sd(te, tok, batch, None).shape == (2, 152, 32)  # <BOS> + 2·75 + <EOS>
        plain = text.encode_sd(te, tok, text.batch_ids(tok, ["a"], None), None)
        skip = text.encode_sd(te, tok, text.batch_ids(tok, ["a"], None), 2)
    assert plain.shape == (1, 77, 32) and not torch.allclose(plain, skip)


def test_sdxl_text_conditioning_concatenates_both_encoders():
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    m = tiny_model("sdxl")
    t1, t2 = CLIPTokenizer.from_pretrained(m / "tokenizer"), CLIPTokenizer.from_pretrained(m / "tokenizer_2")
    e1 = CLIPTextModel.from_pretrained(m / "text_encoder")
    e2 = CLIPTextModelWithProjection.from_pretrained(m / "text_encoder_2")
    assert t2.pad_token_id == 0 and t1.pad_token_id == t1.eos_token_id  # as the real SDXL tokenizers
    with torch.no_grad():
        ids1, ids2 = text.batch_ids(t1, ["a", "b"], 225), text.batch_ids(t2, ["a", "b"], 225)
        ctx, pool = text.encode_sdxl(e1, e2, t2, ids1, ids2)
    assert ctx.shape == (2, 227, 32 + 48) and pool.shape == (2, 48)  # encoder 1 + encoder 2 widths; pooled from 2


def test_sdxl_unet_names_map_to_kohyas_sgm_blocks():
    assert lora.sgm_unet_name("down_blocks.1.attentions.0.proj_in", 2) == "input_blocks.4.1.proj_in"
    assert lora.sgm_unet_name("down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k", 2) == \
        "input_blocks.8.1.transformer_blocks.9.attn2.to_k"
    assert lora.sgm_unet_name("mid_block.attentions.0.proj_out", 2) == "middle_block.1.proj_out"
    assert lora.sgm_unet_name("up_blocks.0.attentions.0.proj_in", 2) == "output_blocks.0.1.proj_in"
    assert lora.sgm_unet_name("up_blocks.1.attentions.2.proj_in", 2) == "output_blocks.5.1.proj_in"


def test_lora_targets_are_kohyas_modules():
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    m = tiny_model("sd15")
    unet = UNet2DConditionModel.from_pretrained(m / "unet")
    names = lora.target_modules(unet, lora.UNET_TARGETS)
    # SD1.x: 16 transformer blocks × (q, k, v, out of two attentions + two feed-forward) + proj_in/out per block
    assert len(names) == 16 * 10 + 16 * 2
    assert "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj" in names
    assert not any("resnets" in n or "norm" in n for n in names)
    te_names = lora.target_modules(CLIPTextModel.from_pretrained(m / "text_encoder"), lora.TEXT_TARGETS)
    assert len(te_names) == 3 * 6 and any(n.endswith("self_attn.out_proj") for n in te_names)
