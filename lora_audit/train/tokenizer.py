"""A CLIP byte-level BPE tokenizer written locally: no download, same format as openai/clip-vit-large-patch14.

The vocabulary is CLIP's layout (the 256 byte symbols, the same with ``</w>``, the merges, then
``<|startoftext|>`` and ``<|endoftext|>``), with merges learnt from a small word list so that caption words are a
few tokens each. ``transformers.CLIPTokenizer`` loads the folder as it would the real one.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# Words the merges are learnt from: the toy dataset's caption vocabulary and common prompt words.
_CORPUS = """pixel art 24x24 sprite punk male female alien ape zombie robot cat face portrait character
hair hat cap beanie hood mohawk headband bandana crown earring glasses sunglasses shades eyes mask pipe cigarette
beard mustache smile frown red orange yellow green blue purple pink brown black white gray grey gold silver dark
light background plain simple solid color colorful retro game 8bit 16bit icon avatar small tiny large detailed
a an the of with and on in by photo photograph realistic style high quality best lowres blurry"""


@cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _learn_merges(words: list[str], n_merges: int) -> list[tuple[str, str]]:
    """Plain BPE over the word list, symbols as CLIP spells them (last symbol of a word ends in ``</w>``)."""
    table = bytes_to_unicode()
    vocab: Counter[tuple[str, ...]] = Counter()
    for w in words:
        syms = [table[b] for b in w.encode("utf-8")]
        syms[-1] += "</w>"
        vocab[tuple(syms)] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in vocab.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += freq
        if not pairs:
            break
        # ties broken by the pair itself so the result never depends on dict order
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, freq in vocab.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        vocab = merged
    return merges


def build_vocab(n_merges: int = 300) -> tuple[dict[str, int], list[tuple[str, str]]]:
    merges = _learn_merges(_CORPUS.split(), n_merges)
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab: dict[str, int] = {}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    return vocab, merges


def write_tokenizer(folder: Path, pad_token: str = EOS, model_max_length: int = 77) -> int:
    """Write vocab.json, merges.txt and the configs of a CLIP tokenizer into ``folder``; return the vocab size.

    ``pad_token`` is ``<|endoftext|>`` for SD1.x's tokenizer and ``!`` for SDXL's second one, as in the real models.
    """
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": model_max_length, "do_lower_case": True,
              "clean_up_tokenization_spaces": False, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return len(vocab)


# --- T5 (FLUX's and SD3's third/second text encoder) ------------------------------------------------------------------

T5_PAD, T5_EOS, T5_UNK = "<pad>", "</s>", "<unk>"


def write_t5_tokenizer(folder: Path, model_max_length: int = 512) -> int:
    """Write a T5 SentencePiece-style Unigram tokenizer (``tokenizer.json`` + config) into ``folder``; return its size.

    The special tokens are T5's own ids (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2), words start with ``▁`` (Metaspace)
    and ``</s>`` ends every sequence, as ``google/t5-v1_1-xxl``'s tokenizer does; the pieces are the caption words
    of ``_CORPUS`` (one piece each) and single characters, so any text tokenizes without an unknown piece. No
    ``<extra_id_*>`` sentinels: the encoders FLUX and SD3 use never see them. ``transformers.T5TokenizerFast``
    loads the folder.
    """
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    folder.mkdir(parents=True, exist_ok=True)
    pieces: list[tuple[str, float]] = [(T5_PAD, 0.0), (T5_EOS, 0.0), (T5_UNK, 0.0), ("▁", -3.0)]
    pieces += [("▁" + w, -1.0 - len(w) / 100) for w in dict.fromkeys(_CORPUS.split())]
    pieces += [(c, -6.0) for c in string.ascii_letters + string.digits + string.punctuation]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single=f"$A {T5_EOS}", pair=f"$A {T5_EOS} $B {T5_EOS}",
                                                       special_tokens=[(T5_EOS, 1)])
    tok.save(str(folder / "tokenizer.json"))
    special = {"eos_token": T5_EOS, "unk_token": T5_UNK, "pad_token": T5_PAD}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    config = {"tokenizer_class": "T5Tokenizer", "model_max_length": model_max_length, "extra_ids": 0,
              "additional_special_tokens": [], "clean_up_tokenization_spaces": False, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return len(pieces)
