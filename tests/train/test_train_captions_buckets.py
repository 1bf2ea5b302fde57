"""Caption processing and bucketing: kohya's semantics on small hand-checked cases (pure Python)."""

import random

import pytest

from lora_audit.errors import EvidenceError
from lora_audit.train.buckets import Buckets, crop_ltrb, make_bucket_resolutions
from lora_audit.train.captions import process_caption, read_caption

CAP = "pixel art, 24x24, punk, green hair, sunglasses, blue background"


def test_keep_tokens_keeps_the_trigger_words_first_while_the_rest_is_shuffled():
    rng = random.Random(3)
    seen = set()
    for _ in range(30):
        out = process_caption(CAP, {"shuffle_caption": True, "keep_tokens": 2}, epoch=1, rng=rng)
        tokens = out.split(", ")
        assert tokens[:2] == ["pixel art", "24x24"]
        assert sorted(tokens[2:]) == sorted(CAP.split(", ")[2:])
        seen.add(tuple(tokens))
    assert len(seen) > 5  # really shuffled


def test_shuffle_without_keep_tokens_buries_the_trigger():
    rng = random.Random(0)
    firsts = {process_caption(CAP, {"shuffle_caption": True}, 1, rng).split(", ")[0] for _ in range(40)}
    assert len(firsts) > 2


def test_no_shuffle_leaves_the_caption_as_written():
    assert process_caption(CAP, {"keep_tokens": 2}, 1, random.Random(0)) == CAP


def test_caption_dropout_rate_and_every_n_epochs():
    rng = random.Random(1)
    outs = [process_caption(CAP, {"caption_dropout_rate": 0.5}, 1, rng) for _ in range(200)]
    assert 60 < outs.count("") < 140 and set(outs) == {"", CAP}
    assert process_caption(CAP, {"caption_dropout_every_n_epochs": 2}, 2, rng) == ""
    assert process_caption(CAP, {"caption_dropout_every_n_epochs": 2}, 3, rng) == CAP


def test_keep_tokens_separator_prefix_suffix_and_tag_dropout():
    params = {"shuffle_caption": True, "keep_tokens_separator": "|||", "caption_prefix": "pfx",
              "caption_suffix": "sfx"}
    out = process_caption("a, b ||| c, d, e ||| f", params, 1, random.Random(0))
    tokens = out.split(", ")
    assert tokens[:2] == ["pfx a", "b"] and tokens[-1] == "f sfx" and sorted(tokens[2:5]) == ["c", "d", "e"]
    out = process_caption(CAP, {"caption_tag_dropout_rate": 1.0, "keep_tokens": 2}, 1, random.Random(0))
    assert out == "pixel art, 24x24"


def test_read_caption_first_line_missing_and_empty(tmp_path):
    img = tmp_path / "0001.png"
    img.write_bytes(b"")
    assert read_caption(img, ".txt") is None
    (tmp_path / "0001.txt").write_text("first line\nsecond\n")
    assert read_caption(img, ".txt") == "first line"
    (tmp_path / "0001.caption").write_text("")
    with pytest.raises(EvidenceError, match="empty"):
        read_caption(img, ".caption")


def test_without_buckets_images_cover_the_resolution_and_are_centre_cropped():
    b = Buckets((64, 64), {"enable_bucket": False})
    assert b.select(96, 96) == ((64, 64), (64, 64))
    assert b.select(48, 24) == ((64, 64), (128, 64))  # scaled by height, then cropped to 64 wide
    assert b.select(24, 24) == ((64, 64), (64, 64))


def test_bucket_resolutions_match_kohya_for_512():
    resos = make_bucket_resolutions((512, 512), 256, 1024, 64)
    assert (512, 512) in resos and (256, 1024) in resos and (1024, 256) in resos and (384, 640) in resos
    assert all(w * h <= 512 * 512 for w, h in resos)


def test_buckets_pick_nearest_aspect_and_no_upscale_only_shrinks():
    params = {"enable_bucket": True, "min_bucket_reso": 256, "max_bucket_reso": 1024, "bucket_reso_steps": 64}
    b = Buckets((512, 512), params)
    reso, resized = b.select(1000, 500)
    assert reso[0] > reso[1] and resized[1] >= reso[1] and resized[0] >= reso[0]
    nb = Buckets((512, 512), {**params, "bucket_no_upscale": True})
    assert nb.select(200, 130) == ((192, 128), (200, 130))  # smaller than the area: never enlarged
    reso, resized = nb.select(1024, 1024)
    assert reso == (512, 512) and resized == (512, 512)


def test_bucket_settings_kohya_asserts_are_errors():
    with pytest.raises(EvidenceError, match="min_bucket_reso"):
        Buckets((64, 64), {"enable_bucket": True, "min_bucket_reso": 256, "max_bucket_reso": 1024,
                           "bucket_reso_steps": 64})


def test_crop_ltrb_for_sdxl_conditioning():
    assert crop_ltrb((64, 64), (96, 96)) == (0, 0, 64, 64)
    left, top, right, bottom = crop_ltrb((128, 64), (64, 64))
    assert (left, top) == (32, 0) and right == 96
