"""The generated catalog and our layer on top of it."""

import json
from importlib import resources

import pytest

from lora_audit.kohya import gen_catalog
from lora_audit.kohya.catalog import CATEGORIES, ConversionError, catalog, category


def _categories_file() -> str:
    return (resources.files("lora_audit.kohya") / "data" / "categories.toml").read_text()


def test_catalog_records_its_sd_scripts_commit():
    assert catalog().sd_scripts_commit == "48d368fa557731ad0488c07304dfeba8c07910eb"


@pytest.mark.parametrize(
    "name,type_,default,scripts",
    [
        ("network_dim", "int", None, {"train_network.py", "sdxl_train_network.py"}),
        ("network_alpha", "float", 1, {"train_network.py", "sdxl_train_network.py"}),
        ("multires_noise_discount", "float", 0.3, {"train_network.py", "sdxl_train_network.py"}),
        ("mixed_precision", "str", "no", {"train_network.py", "sdxl_train_network.py"}),
        ("cache_text_encoder_outputs", None, False, {"sdxl_train_network.py"}),
    ],
)
def test_catalog_has_kohya_types_and_defaults(name, type_, default, scripts):
    arg = catalog().get(name)
    assert arg is not None
    assert arg.type == type_ and arg.default == default and set(arg.scripts) == scripts


def test_every_catalog_argument_has_a_category():
    text = _categories_file()
    missing = [a for a in catalog().arguments if f'"{a}"' not in text]
    assert missing == []
    assert category("shuffle_caption") == "Captions & data"
    assert CATEGORIES[0] == "Model & architecture" and "Noise & regularization" in CATEGORIES


def test_argparse_typing():
    c = catalog()
    assert c.convert("text_encoder_lr", ["5e-5"]) == [5e-5]  # nargs="*"
    assert c.convert("lr_warmup_steps", "10%") == pytest.approx(0.1)  # int_or_float
    assert c.convert("lr_warmup_steps", "100") == 100
    assert c.convert("shuffle_caption", None) is True
    with pytest.raises(ConversionError):
        c.convert("network_dim", "thirty-two")
    with pytest.raises(ConversionError):
        c.convert("mixed_precision", "fp8")


def test_abbreviated_flags_resolve_like_argparse():
    arg, note = catalog().for_flag("--network_di")
    assert arg.name == "network_dim" and "abbreviation" in note
    assert catalog().for_flag("--network_")[0] is None  # ambiguous


def test_generator_reads_add_argument_calls(tmp_path):
    lib = tmp_path / "library"
    lib.mkdir()
    (lib / "__init__.py").write_text("")
    (lib / "train_util.py").write_text(
        "DEFAULT = 7\n"
        "def add_x(parser):\n"
        "    parser.add_argument('--alpha', type=float, default=DEFAULT, help='a / b')\n"
        "    parser.add_argument('--flag', action='store_true')\n"
    )
    (lib / "config_util.py").write_text("class ConfigSanitizer:\n    X_SCHEMA = {'num_repeats': int}\n")
    (tmp_path / "train_network.py").write_text(
        "import library.train_util as train_util\n"
        "def setup_parser():\n"
        "    parser = None\n"
        "    train_util.add_x(parser)\n"
        "    parser.add_argument('--network_dim', type=int, default=None, choices=[4, 8])\n"
    )
    (tmp_path / "sdxl_train_network.py").write_text(
        "import train_network\n"
        "def setup_parser():\n"
        "    parser = train_network.setup_parser()\n"
        "    parser.add_argument('--sdxl_only', action='store_true')\n"
    )
    out = tmp_path / "catalog.json"
    gen_catalog.main([str(tmp_path), "--out", str(out), "--commit", "abc"])
    data = json.loads(out.read_text())
    args = data["arguments"]
    assert data["sd_scripts_commit"] == "abc"
    assert args["alpha"]["default"] == 7 and args["alpha"]["type"] == "float" and args["alpha"]["help"] == "a"
    assert args["flag"]["default"] is False
    assert args["network_dim"]["choices"] == [4, 8]
    assert args["sdxl_only"]["scripts"] == ["sdxl_train_network.py"]
    assert set(args["alpha"]["scripts"]) == {"train_network.py", "sdxl_train_network.py"}
    assert data["dataset_config"]["schemas"]["X_SCHEMA"] == {"num_repeats": "int"}
