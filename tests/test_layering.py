"""The flow runs one way (DESIGN.md): evidence -> Run -> diff -> findings -> plan -> variants -> launch ->
comparison -> votes -> report. A module may import its own layer and the layers below it, never a later one: a
parser knows nothing of reports, the rules know nothing of how findings are printed.

Every import of lora_audit (at the top of a module or inside a function) is read from the source with ``ast``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "lora_audit"

# Bottom to top. A name is a top-level module or package of lora_audit.
LAYERS: list[set[str]] = [
    {"errors", "settings", "format", "expr", "intervals", "version"},  # no dependencies: usable everywhere
    {"model"},                                  # the boxes: Run, Param, Evidence...
    {"kohya", "sd_scripts_version"},           # what we know of sd-scripts (may describe values as Settings)
    {"evidence"},                               # evidence files -> Run
    {"derive", "curves", "weights", "spectra", "loaders"},  # facts of one run or LoRA file (loaders: pipelines)
    {"diff"},                                   # Run, Run -> RunDiff
    {"rules"},                                  # RunDiff -> Findings
    {"ablate", "study_model"},                  # Findings -> AblationPlan -> Variants (study.toml, variant.json)
    {"launch", "train"},                        # Variants -> TrainResults (kohya, or the embedded trainer)
    {"compare"},                                # LoRA files -> Comparison
    {"votes"},                                  # Comparison -> votes, statistics, verdicts
    {"audit"},                                  # the whole job: diff, findings, plan, comparisons of a study
    {"report"},                                 # renders the models it is handed
    {"__init__", "cli", "cli_support", "commands"},  # the public API and the command layer on top
]

# Modules that belong lower than their package: the one jinja2 environment is a neutral service (no models), so the
# compare and votes layers render through it without depending on the report layer's renderers.
# ``python -m lora_audit.launch|train`` entry points are commands.
MODULE_LAYER = {"report.templates": 0, "launch.__main__": len(LAYERS) - 1, "train.__main__": len(LAYERS) - 1}

# The embedded trainer is a program that launch runs (python -m lora_audit.train), not a library: only the command
# layer imports it; compare and train share diffusers loading through ``loaders``.
LEAVES = {"train"}

# Known violations to fix: (importing file, imported module). Each is an edge against the flow that someone is
# moving at the time of writing. The test fails when an entry is no longer true, so this list only shrinks.
# None left: the Wilson interval (lora_audit.intervals), the vote counts per row (handed to compare by the command)
# and the version (lora_audit.version) moved.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()


def _layer_of() -> dict[str, int]:
    out: dict[str, int] = {}
    for i, names in enumerate(LAYERS):
        for n in names:
            out[n] = i
    return out


def _unit(module: str) -> str | None:
    """``lora_audit.report.templates`` -> ``report.templates`` when listed in MODULE_LAYER, else ``report``."""
    parts = module.split(".")
    if parts[0] != "lora_audit":
        return None
    if len(parts) == 1:
        return "__init__"
    for k in MODULE_LAYER:
        if ".".join(parts[1:]).startswith(k):
            return k
    return parts[1]


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def _imports(path: Path) -> list[tuple[str, int]]:
    package = list(path.relative_to(PACKAGE.parent).parts[:-1])  # a module's package; an __init__'s own folder
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - (node.level - 1)] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            for a in node.names:  # from lora_audit.report import templates: the submodule is what is imported
                sub = f"{module}.{a.name}"
                out.append((sub if _is_module(sub) else module, node.lineno))
    return out


def _edges() -> dict[tuple[str, str], str]:
    """(importing file, imported module) -> why it is against the flow, for every edge against the flow."""
    layer = _layer_of()
    bad = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        own_module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        src = _unit(own_module)
        for module, line in _imports(path):
            dst = _unit(module)
            if dst is None or dst == src or src is None:
                continue
            src_layer = MODULE_LAYER.get(src, layer.get(src))
            dst_layer = MODULE_LAYER.get(dst, layer.get(dst))
            assert src_layer is not None, f"{rel}: {src} is in no layer of LAYERS: add it where it belongs"
            assert dst_layer is not None, f"{rel}:{line}: {dst} is in no layer of LAYERS: add it where it belongs"
            if dst in LEAVES and src_layer != len(LAYERS) - 1:
                bad[(str(rel), module)] = f"{rel}:{line} imports {module}: {dst} is imported by the command layer only"
            elif dst_layer > src_layer:
                bad[(str(rel), module)] = (f"{rel}:{line} imports {module}: {src} (layer {src_layer}) must not "
                                           f"import {dst} (layer {dst_layer}), later in the flow")
    return bad


def test_imports_follow_the_flow():
    bad = _edges()
    new = [why for edge, why in sorted(bad.items()) if edge not in KNOWN_VIOLATIONS]
    assert not new, "imports against the flow:\n" + "\n".join(new)


def test_known_violations_are_still_there():
    """A fixed violation leaves the list: the list only shrinks."""
    stale = sorted(KNOWN_VIOLATIONS - set(_edges()))
    assert not stale, f"fixed, remove from KNOWN_VIOLATIONS: {stale}"


def test_the_scan_sees_an_import_against_the_flow(tmp_path, monkeypatch):
    """The checker itself: a parser that imports the report is caught, with its file and line."""
    pkg = tmp_path / "lora_audit"
    (pkg / "evidence").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "evidence" / "__init__.py").write_text("")
    (pkg / "evidence" / "reader.py").write_text("import os\n\ndef f():\n    from ..report import console\n")
    (pkg / "report").mkdir()
    (pkg / "report" / "__init__.py").write_text("from lora_audit.evidence import reader\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    bad = _edges()
    assert list(bad) == [("lora_audit/evidence/reader.py", "lora_audit.report")]
    assert "reader.py:4" in next(iter(bad.values()))
