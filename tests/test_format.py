"""One way to write a value (lora_audit.format): kohya's TOML/CLI convention, the same in the terminal, the diff
words, the findings and the Markdown report."""

from lora_audit.diff import change_words
from lora_audit.format import csv_cell, format_value
from lora_audit.model import Param, Run
from lora_audit.report.console import render_run
from lora_audit.report.templates import environment


def test_values_read_as_kohya_writes_them():
    assert format_value(None) == "unset"
    assert format_value(True) == "true" and format_value(False) == "false"
    assert format_value(1e-4) == "0.0001" and format_value(1e-5) == "1e-05"
    assert format_value(16.0) == "16" and format_value(0.5) == "0.5"
    # never rounded to six digits: two learning rates that differ in the 7th digit stay different
    assert format_value(0.000123456789) == "0.000123456789"
    assert format_value(0.000123456789) != format_value(0.000123457)
    assert format_value(float("nan")) == "nan"
    assert format_value(["conv_dim=4", "conv_alpha=1"]) == "conv_dim=4 conv_alpha=1"
    assert format_value([]) == "[]"
    assert format_value("fp16") == "fp16" and format_value(7) == "7"


def test_every_place_agrees():
    # the diff's words, the terminal table and the report's jinja filter print the same text
    assert change_words("xformers", None, 1e-4) == "unset→0.0001"
    assert change_words("learning_rate", 0.000123456789, 0.000123457).endswith("0.000123456789→0.000123457")
    run = Run(name="r", params={"shuffle_caption": Param(value=True, origin="explicit", source="a.sh:3"),
                                "vae": Param(value=None, origin="explicit", source="a.toml:2")})
    text = render_run(run)
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines() if line.startswith(("vae ", "shuffle"))}
    assert rows == {"shuffle_caption": "true", "vae": "unset"}
    assert environment().from_string("{{ v | value }}").render(v=False) == "false"


def test_csv_cells_are_not_formulas():
    assert csv_cell("=1+1") == "'=1+1" and csv_cell(-0.5) == -0.5 and csv_cell(None) == ""
