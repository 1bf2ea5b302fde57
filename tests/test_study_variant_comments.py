"""The comment a variant's config.toml carries for each edited key says what the value was, written the way the
rest of the tool writes values (kohya's convention, lora_audit.format.format_value) and on one line."""

import tomllib

from lora_audit.ablate.emit import variant_config
from lora_audit.ablate.plan import ParamChange, VariantSpec

BASE = 'learning_rate = 0.0001\nnetwork_dim = 16\ncache_latents = true\noutput_name = "x"\n'


def _comments(changes: list[ParamChange]) -> dict[str, str]:
    text = variant_config(BASE, VariantSpec(id="v1", baseline="good", changes=changes), "x-v1")
    tomllib.loads(text)  # still TOML
    return {line.split("=", 1)[0].strip(): line.split("#", 1)[1].strip()
            for line in text.splitlines() if "# lora-audit v1" in line}


def test_was_values_are_written_as_kohya_writes_them():
    got = _comments([ParamChange(param="learning_rate", **{"from": 1e-05}, to=0.0001),
                     ParamChange(param="cache_latents", **{"from": False}, to=True),
                     ParamChange(param="network_dim", **{"from": None}, to=16)])
    assert got == {"learning_rate": "lora-audit v1: was 1e-05", "cache_latents": "lora-audit v1: was false",
                   "network_dim": "lora-audit v1: was unset"}


def test_a_was_value_with_a_line_break_stays_in_its_comment():
    text = variant_config(BASE, VariantSpec(id="v1", baseline="good", changes=[
        ParamChange(param="network_dim", **{"from": "8\nnetwork_alpha = 999"}, to=16)]), "x-v1")
    assert "network_alpha" not in tomllib.loads(text)
    assert [line for line in text.splitlines() if "network_alpha" in line] == \
        ["network_dim = 16 # lora-audit v1: was 8\\nnetwork_alpha = 999"]
