"""Tokenizing and encoding captions as kohya's SD / SDXL strategies do (``library/strategy_*.py``).

``max_token_length`` 150 or 225 tokenizes to 152/227 tokens and cuts them into 2 or 3 chunks of 75 framed by
``<BOS>``…``<EOS>`` (``TokenizeStrategy._get_input_ids``); each chunk goes through the text encoder and the
hidden states are stitched back into one sequence of 1 + 75·n + 1 (``encode_tokens``).
"""

from __future__ import annotations

import torch


def input_ids(tokenizer, text: str, max_token_length: int | None) -> torch.Tensor:
    """(chunks, 77) token ids of one caption."""
    model_max = tokenizer.model_max_length
    max_length = model_max if max_token_length is None else max_token_length + 2
    ids = tokenizer(text, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt").input_ids
    if max_length <= model_max:
        return ids
    ids = ids.squeeze(0)
    v1 = tokenizer.pad_token_id == tokenizer.eos_token_id
    chunks = []
    for i in range(1, max_length - model_max + 2, model_max - 2):
        chunk = torch.cat((ids[0].unsqueeze(0), ids[i:i + model_max - 2], ids[-1].unsqueeze(0)))
        if not v1:  # v2 / SDXL's second tokenizer pads with something other than <EOS>
            if chunk[-2] != tokenizer.eos_token_id and chunk[-2] != tokenizer.pad_token_id:
                chunk[-1] = tokenizer.eos_token_id
            if chunk[1] == tokenizer.pad_token_id:
                chunk[1] = tokenizer.eos_token_id
        chunks.append(chunk)
    return torch.stack(chunks)


def batch_ids(tokenizer, texts: list[str], max_token_length: int | None) -> torch.Tensor:
    return torch.stack([input_ids(tokenizer, t, max_token_length) for t in texts])  # (b, chunks, 77)


def _stitch(states: torch.Tensor, model_max: int) -> torch.Tensor:
    """(b, n·77, d) → (b, 1 + n·75 + 1, d): <BOS>, each chunk's inner tokens, the last <EOS>/<PAD>."""
    total = states.shape[1]
    parts = [states[:, 0].unsqueeze(1)]
    for i in range(1, total, model_max):
        parts.append(states[:, i:i + model_max - 2])
    parts.append(states[:, -1].unsqueeze(1))
    return torch.cat(parts, dim=1)


def encode_sd(text_encoder, tokenizer, ids: torch.Tensor, clip_skip: int | None) -> torch.Tensor:
    """``SdTextEncodingStrategy.encode_tokens``: last hidden state, or the clip_skip-th from the end + final norm."""
    b, n, model_max = ids.shape
    flat = ids.reshape(-1, model_max)
    if clip_skip is None:
        states = text_encoder(flat)[0]
    else:
        out = text_encoder(flat, output_hidden_states=True, return_dict=True)
        # transformers < 5 wraps the layers in .text_model; 5 does not
        final_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
        states = final_norm(out.hidden_states[-clip_skip])
    states = states.reshape(b, -1, states.shape[-1])
    # the v2 branch's chunk fix-up is only for tokenizers that pad with something other than <EOS>; SD1's pads with it
    return _stitch(states, model_max) if n > 1 else states


def encode_sdxl(text_encoder1, text_encoder2, tokenizer2, ids1: torch.Tensor, ids2: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``SdxlTextEncodingStrategy._get_hidden_states_sdxl``: (context (b, seq, d1 + d2), pooled (b, proj))."""
    b, n, model_max = ids1.shape
    out1 = text_encoder1(ids1.reshape(-1, model_max), output_hidden_states=True, return_dict=True)
    # kohya takes hidden_states[11] of CLIP-L's 12 layers: the penultimate layer, whatever the depth
    h1 = out1.hidden_states[-2]
    flat2 = ids2.reshape(-1, model_max)
    out2 = text_encoder2(flat2, output_hidden_states=True, return_dict=True)
    h2 = out2.hidden_states[-2]
    # _pool_workaround: the projection of the (first) <EOS> token's last hidden state
    eos = torch.argmax((flat2 == tokenizer2.eos_token_id).int(), dim=1)
    last = out2.last_hidden_state
    pool = text_encoder2.text_projection(last[torch.arange(last.shape[0]), eos])
    h1 = h1.reshape(b, -1, h1.shape[-1])
    h2 = h2.reshape(b, -1, h2.shape[-1])
    if n > 1:
        h1, h2 = _stitch(h1, model_max), _stitch(h2, model_max)
        pool = pool[::n]  # the first chunk's
    return torch.cat([h1, h2], dim=2), pool
