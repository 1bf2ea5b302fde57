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


NETWORK = {"train_network.py", "sdxl_train_network.py", "flux_train_network.py", "sd3_train_network.py",
           "lumina_train_network.py", "hunyuan_image_train_network.py", "anima_train_network.py"}
FULL = {"train_db.py", "fine_tune.py", "sdxl_train.py", "flux_train.py", "sd3_train.py", "lumina_train.py",
        "anima_train.py"}


@pytest.mark.parametrize(
    "name,type_,default,scripts",
    [
        ("network_dim", "int", None, NETWORK),
        ("network_alpha", "float", 1, NETWORK),
        ("multires_noise_discount", "float", 0.3, NETWORK | FULL),
        ("mixed_precision", "str", "no", NETWORK | FULL),
        ("ae", "str", None, {"flux_train_network.py", "flux_train.py", "lumina_train_network.py", "lumina_train.py"}),
        ("learning_rate_te1", "float", None, {"sdxl_train.py", "sd3_train.py"}),
        ("prior_loss_weight", "float", 1.0, NETWORK | {"train_db.py"}),  # add_training_arguments(support_dreambooth)
        ("in_json", "str", None, (NETWORK | FULL) - {"train_db.py"}),  # add_dataset_arguments(support_caption)
    ],
)
def test_catalog_has_kohya_types_and_defaults(name, type_, default, scripts):
    arg = catalog().get(name)
    assert arg is not None
    assert arg.type == type_ and arg.default == default and set(arg.scripts) == scripts


def test_catalog_covers_every_training_script():
    assert set(catalog().scripts) == NETWORK | FULL


def test_per_script_definitions_differ_where_kohya_defines_them_differently():
    c = catalog()
    assert c.get("discrete_flow_shift", "flux_train_network.py").default == 3.0
    assert c.get("discrete_flow_shift", "lumina_train_network.py").default == 6.0
    assert "nextdit_shift" in c.get("timestep_sampling", "lumina_train_network.py").choices
    assert "nextdit_shift" not in c.get("timestep_sampling", "flux_train_network.py").choices
    assert c.get("timestep_sampling", "flux_train_network.py").defined_in.startswith("library/flux_train_utils.py:")


def test_a_flag_of_another_script_is_named():
    c = catalog()
    assert c.foreign("ae", "flux_train_network.py") is None
    msg = c.foreign("ae", "train_network.py")
    assert msg.startswith("--ae is a flux_train_network.py argument") and "train_network.py would refuse it" in msg
    assert c.foreign("learning_rate_te1", "sdxl_train.py") is None
    assert "sdxl_train_network.py would refuse it" in c.foreign("learning_rate_te1", "sdxl_train_network.py")


def test_abbreviations_expand_within_the_scripts_own_parser():
    c = catalog()
    # --t5xxl_max is unique among flux_train_network.py's options; train_network.py has none starting so
    arg, note = c.for_flag("--t5xxl_max", "flux_train_network.py")
    assert arg.name == "t5xxl_max_token_length" and "abbreviation" in note
    assert c.for_flag("--t5xxl_max", "train_network.py")[0] is None


def test_every_catalog_argument_has_a_category():
    text = _categories_file()
    missing = [a for a in catalog().arguments if f'"{a}"' not in text]
    assert missing == []
    assert category("shuffle_caption") == "Captions & data"
    assert category("timestep_sampling") == "Timesteps & flow matching"
    assert category("blocks_to_swap") == "Precision & memory"
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
    (lib / "dit_util.py").write_text(
        "def add_common(parser, support_db: bool, support_caption=True):\n"
        "    if support_db:\n"
        "        parser.add_argument('--prior', type=float, default=1.0)\n"
        "    if not support_caption:\n"
        "        parser.add_argument('--no_caption_only', action='store_true')\n"
        "    parser.add_argument('--shift', type=float, default=3.0, help='flux')\n"
    )
    (tmp_path / "sdxl_train_network.py").write_text(
        "import train_network\n"
        "from library import dit_util\n"
        "def setup_parser():\n"
        "    parser = train_network.setup_parser()\n"
        "    dit_util.add_common(parser, True)\n"
        "    parser.add_argument('--sdxl_only', action='store_true')\n"
    )
    (tmp_path / "fine_tune.py").write_text(
        "from library.dit_util import add_common\n"
        "def setup_parser():\n"
        "    parser = None\n"
        "    add_common(parser, False, support_caption=False)\n"
        "    parser.add_argument('--shift', type=float, default=6.0, help='lumina')\n"
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
    # helper calls are followed with their literal arguments: `if support_db:` is decided per script
    assert args["prior"]["scripts"] == ["sdxl_train_network.py"]
    assert args["no_caption_only"]["scripts"] == ["fine_tune.py"]
    assert data["scripts"] == ["train_network.py", "sdxl_train_network.py", "fine_tune.py"]
    # the same argument defined twice differently: per_script holds what differs
    assert args["shift"]["default"] == 3.0 and args["shift"]["per_script"]["fine_tune.py"]["default"] == 6.0
