"""Write a study folder: study.toml, and per variant config.toml (+ dataset.toml), the runner (``lora-audit-run.sh``),
variant.json, and the user's own script edited at the changed lines (under its own name).

Minimal change is textual: when the baseline run's evidence is a kohya config TOML, each variant's config.toml is
that file edited with tomlkit (comments, order and formatting kept) at the changed keys only, plus the
per-variant output name/dir and logging dir. Otherwise (a shell script, notes, a GUI JSON, LoRA metadata) the
study first writes ``baseline-<run>.toml``, a clean kohya config of the baseline's explicit values (defaults left
to kohya), and every variant is that file edited the same way, so a diff of baseline and variant shows just the
change. Every value written into the runner is shell-quoted, and every text in a comment goes through
``files.comment_text`` (one line, control characters escaped). Files are written by ``files.commit``: all of a
study's files are rendered first, then written only if none of the files they replace was edited by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from lora_audit.ablate.files import (
    RUNNER,
    STUDY_FILE,
    check_id,
    check_out,
    comment_text,
    commit,
    parse_toml,
    read_study_meta,
    read_text,
)
from lora_audit.ablate.layout import Layout, layout_of, source_of
from lora_audit.ablate.plan import _NOT_CONFIG, AblationPlan, VariantSpec
from lora_audit.ablate.runner import run_dir_of, runner_script
from lora_audit.ablate.toml_edit import Edit, TomlEditError, edit_toml, set_key
from lora_audit.errors import EvidenceError
from lora_audit.evidence._io import read_text as read_evidence
from lora_audit.format import format_value
from lora_audit.kohya.catalog import CATEGORIES, catalog, category
from lora_audit.model import Run
from lora_audit.study_model import Study, Variant

# sd_scripts_commit is no kohya argument: a variant pins it through the checkout launch runs (variant.json)
_NOT_WRITTEN = _NOT_CONFIG | {"config_file", "dataset_config", "output_config", "sd_scripts_commit"}
# files the tool writes in a variant folder: a user's script by one of these names is copied under another
_TOOL_FILES = {"config.toml", "dataset.toml", "variant.json", RUNNER, "script-not-edited.txt"}


def _source_file(source: str | None) -> str | None:
    return source_of(source)[0]


def baseline_config(run: Run, lay: Layout | None = None) -> tuple[str, str | None]:
    """(config TOML text, dataset TOML path or None) the variants of ``run`` start from: the user's own config TOML
    (its own evidence, or the one the script's ``--config_file`` names), else a config rebuilt from the run's
    explicit values (values the dataset TOML sets stay in the dataset TOML)."""
    lay = lay or layout_of(run)
    dataset = str(lay.dataset) if lay.dataset else None
    if lay.config is not None:
        return read_evidence(lay.config), dataset
    explicit = {k: p for k, p in run.params.items() if p.origin == "explicit" and k not in _NOT_WRITTEN
                and k in catalog() and lay.where(run, k)[0] != "dataset"}
    if not explicit:
        raise EvidenceError(f"{comment_text(run.name)} has no explicit training settings to build a config from "
                            "(only inferred or unknown values)")
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"kohya config of run {comment_text(run.name)}, rebuilt by lora-audit from its evidence:"))
    doc.add(tomlkit.comment("explicit values only, each with its source; kohya's defaults are left to kohya."))
    for cat in CATEGORIES:
        names = [k for k in explicit if category(k) == cat]
        if not names:
            continue
        doc.add(tomlkit.nl())
        doc.add(tomlkit.comment(cat))
        for k in names:
            p = explicit[k]
            item = tomlkit.item(_toml_value(k, p.value))
            if p.source:
                item.comment(comment_text(p.source.replace("\\", "/").rsplit("/", 1)[-1]))
            doc.add(k, item)
    return tomlkit.dumps(doc), dataset


def _toml_value(name: str, value: Any):
    arg = catalog().get(name)
    if arg is not None and arg.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if name == "resolution" and isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if name == "resolution" and isinstance(value, int):
        value = str(value)
    return value


def _set(doc, key: str, value: Any, remove: bool, comment: str | None = None) -> bool:
    return set_key(doc, key, value, remove, comment)


def _removes(c, script: str) -> bool:
    """Whether the variant leaves ``c.param`` out: its value is kohya's default, or none, or an unset value
    (false, 0, empty) of an argument the variant's training script does not have (``--apply_t5_attn_mask`` when a
    FLUX baseline goes back to sdxl_train_network.py: that parser would refuse it, and absent is all it can be)."""
    if c.to_origin == "default" or c.to is None:
        return True
    return not c.to and not catalog().accepts(script, c.param)


def _flat(text: str) -> dict:
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return {}
    out = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for v in data.values():
        if isinstance(v, dict):
            out.update(v)
    return out


def _logs(run: Run | None, lay: Layout | None, log: bool) -> str | None:
    """Where logging_dir is set per variant: 'config', 'script', or None (not at all: nothing is added silently;
    the baseline had one, or --log asked for it)."""
    p = run.params.get("logging_dir") if run is not None else None
    if run is not None and p is not None and p.origin == "explicit":
        in_script = lay is not None and lay.where(run, "logging_dir")[0] == "script" and lay.config_from_script
        return "script" if in_script else "config"
    return "config" if log else None


def variant_config(base_text: str, v: VariantSpec, output_name: str, base_label: str = "the baseline config",
                   run: Run | None = None, lay: Layout | None = None, line_edits: bool = False,
                   log: bool = False) -> str:
    """The baseline config with only the variant's values edited: at the lines they came from (``line_edits``,
    when the text is the user's file as the provenance saw it), else where their key is; plus the per-variant
    output dir/name (and logging dir, see ``_logs``). A value the script sets as a flag next to ``--config_file``
    stays a flag (the runner passes it), since the command line wins over the config in kohya."""
    edits: list[Edit] = []

    def line_of(name: str) -> int | None:
        if not line_edits or run is None or lay is None:
            return None
        where, line = lay.where(run, name)
        return line if where == "config" else None

    for c in v.changes:
        if c.param in _NOT_WRITTEN or c.via:  # via: set by the dataset TOML the variant uses
            continue
        if run is not None and lay is not None and lay.config_from_script and lay.where(run, c.param)[0] == "script":
            continue
        if run is not None and lay is not None and lay.where(run, c.param)[0] == "dataset":
            continue  # the dataset TOML's value wins over the config's: edited there (variant_dataset)
        edits.append(Edit(c.param, _toml_value(c.param, c.to), _removes(c, v.script),
                          line_of(c.param), f"lora-audit {v.id}: was {format_value(c.from_)}"
                          + (" (inferred value)" if c.to_origin == "inferred" else "")))
    outputs = [("output_dir", "output"), ("output_name", output_name)]
    if _logs(run, lay, log) == "config":
        outputs.append(("logging_dir", "logs"))
    for key, value in outputs:
        edits.append(Edit(key, value, False, line_of(key), "lora-audit: per-variant output"))
    if "dataset_config" in _flat(base_text):
        edits.append(Edit("dataset_config", "dataset.toml", False, line_of("dataset_config")))
    try:
        return edit_toml(base_text, edits)
    except TomlEditError as e:
        raise EvidenceError(str(e), base_label) from None


def _dataset_value(name: str, value: Any) -> Any:
    """A value as a dataset TOML writes it: resolution is an int or [width, height] there
    (config_util.ConfigSanitizer: __validate_and_convert_scalar_or_twodim), not kohya's "W,H" string."""
    if name == "resolution":
        parts = [int(float(x)) for x in str(value).replace("x", ",").split(",") if x.strip()] \
            if not isinstance(value, (list, tuple)) else [int(x) for x in value]
        return parts[0] if len(parts) == 1 else parts
    return value


def variant_dataset(text: str, v: VariantSpec, run: Run, lay: Layout, label: str) -> str:
    """The dataset TOML with the variant's changes of values it sets edited at their lines (kohya takes the dataset
    TOML's values before the config's: config_util.BlueprintGenerator.generate)."""
    edits = []
    for c in v.changes:
        if c.param in _NOT_WRITTEN or c.via:
            continue
        where, line = lay.where(run, c.param)
        if where == "dataset":
            edits.append(Edit(c.param, _dataset_value(c.param, c.to), c.to_origin == "default" or c.to is None, line))
    if not edits:
        return text
    try:
        return edit_toml(text, edits, by_key=False)
    except (TomlEditError, ValueError) as e:
        raise EvidenceError(f"cannot edit the dataset TOML for {v.id}: {e}", label) from None


train_script = runner_script  # the name it had when the runner was called train.sh


def _script_flags(run: Run, lay: Layout, v: VariantSpec, output_name: str, log: bool) -> list[str]:
    """The flags the user's script passes next to ``--config_file`` (they override the config), with the
    variant's values, as shell words for the runner."""
    from lora_audit.ablate.script_edit import _render

    if not lay.config_from_script:
        return []
    changes = {c.param: c for c in v.changes if not c.via}
    per_variant = {"output_name": output_name}  # output_dir/logging_dir: the runner passes them, absolute
    words: list[str] = []
    for name in run.params:
        if lay.where(run, name)[0] != "script" or name in _NOT_WRITTEN or name not in catalog() \
                or name in ("output_dir", "logging_dir"):
            continue
        value = run.params[name].value
        if name in changes:
            c = changes[name]
            if _removes(c, v.script):
                continue
            value = _toml_value(name, c.to)
        value = per_variant.get(name, value)
        words += _render(name, value, "shell")
    return words


def _baseline_folder(name: str) -> str:
    safe = _safe(name)
    if safe != name:  # two names that only differ in what _safe replaces must not share a folder
        safe += "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"baseline-{safe}"


def _baseline_text(out: Path, run: Run, lay: Layout, reuse: bool = True) -> tuple[str, str | None, str, bool]:
    """(baseline TOML text, dataset TOML path, where the study keeps it, whether to write it). With ``reuse``
    (a bisection's later rounds) a baseline the study already has is read back, so that every round edits the
    same text as the first; else it is written afresh from the evidence (a hand edit of it is then refused by
    ``files.commit`` like any other)."""
    text, dataset = baseline_config(run, lay)
    folder = _baseline_folder(run.name)
    if not reuse:
        return text, dataset, f"{folder}/config.toml", True
    for name in (f"{folder}/config.toml", f"{folder}.toml"):  # the second: studies written before the folder
        base_file = out / name
        if not (base_file.exists() or base_file.is_symlink()):
            continue
        if not base_file.is_file() or base_file.is_symlink():
            raise EvidenceError("exists and is not a file lora-audit wrote: remove it or choose another --out",
                                str(base_file))
        old = read_text(base_file, "a study baseline")
        parse_toml(old, base_file, "a study baseline (remove it to regenerate)")
        try:
            tomlkit.parse(old)
        except (TOMLKitError, ValueError, RecursionError) as e:
            raise EvidenceError(f"not TOML lora-audit can edit: {comment_text(str(e))[:200]}",
                                str(base_file)) from None
        return old, dataset, name, False
    return text, dataset, f"{folder}/config.toml", True


def _script_copy_name(path: Path) -> str:
    name = path.name if path.name not in _TOOL_FILES else f"own-{path.name}"
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        name = "own-script" + path.suffix
    return name


def render_variants(variants: list[VariantSpec], runs: dict[str, Run], out: Path, backend: str = "kohya",
                    sd_scripts: str = "sd-scripts", log: bool = False,
                    reuse_baseline: bool = True) -> dict[str, tuple[str, bool]]:
    """Every file of ``variants`` (relative path → (text, executable)), written nowhere yet. The first time a
    baseline run is used, ``baseline-<run>/`` gets its files as they are (config, dataset TOML, script), so that
    ``diff -r baseline-<run> <variant>`` shows exactly what the variant changes."""
    out = Path(out)
    files: dict[str, tuple[str, bool]] = {}
    bases: dict[str, tuple[str, str | None, str, Layout, bool]] = {}
    pin = backend == "kohya" and _version_differs(runs)
    for v in variants:
        check_id(v.id, "variant")
        run = runs[v.baseline]
        if v.baseline not in bases:
            lay = layout_of(run)
            text, dataset, name, new = _baseline_text(out, run, lay, reuse_baseline)
            if new:
                files[name] = (text, False)
                folder = name.rsplit("/", 1)[0]
                if dataset:
                    files[f"{folder}/dataset.toml"] = (read_evidence(dataset), False)
                if lay.script is not None:
                    with contextlib.suppress(EvidenceError):
                        files[f"{folder}/{_script_copy_name(lay.script)}"] = (read_evidence(lay.script), False)
            same = lay.config is not None and text == read_evidence(lay.config)
            bases[v.baseline] = (text, dataset, name, lay, same)
        text, dataset, base_name_file, lay, same = bases[v.baseline]
        # a dataset change set (ablate.plan._dataset_set) is applied by using the bad run's dataset TOML
        dataset = next((str(c.to) for c in v.changes if c.param == "dataset_config" and c.to), dataset)
        base_name = run.value("output_name") or "lora"
        output_name = f"{base_name}-{v.id}"
        d = out / v.id
        files[f"{v.id}/config.toml"] = (variant_config(text, v, output_name, str(out / base_name_file), run, lay,
                                                       same, log), False)
        if dataset:
            ds_text = read_evidence(dataset)
            if lay.dataset is not None and Path(dataset) == lay.dataset:
                ds_text = variant_dataset(ds_text, v, run, lay, dataset)
            files[f"{v.id}/dataset.toml"] = (ds_text, False)
        script_copy, script_files = _edited_script(run, v, d, output_name, lay, log)
        files.update({f"{v.id}/{k}": (t, False) for k, t in script_files.items()})
        files[f"{v.id}/{RUNNER}"] = (runner_script(v, backend, sd_scripts, bool(dataset), lay.launcher,
                                                   _script_flags(run, lay, v, output_name, log),
                                                   run_dir_of(run, lay), _logs(run, lay, log) is not None), True)
        record = {k: val for k, val in v.dump().items()
                  if k in ("id", "baseline", "changes", "hash", "purpose", "steps", "script")}
        if log and not (run.params.get("logging_dir") and run.params["logging_dir"].origin == "explicit"):
            record["changes"] = record["changes"] + [{"param": "logging_dir", "from": None, "to": "logs",
                                                      "to_origin": "explicit", "per_variant": True}]
        record["runner"] = RUNNER
        record["run_dir"] = run_dir_of(run, lay)  # where the runner runs kohya (relative paths resolve there)
        record["edited_script"] = script_copy
        if pin and (commit := _variant_commit(v, run)):
            record["sd_scripts_commit"] = commit  # launch runs it from a git worktree at this commit
        files[f"{v.id}/variant.json"] = (Variant.model_validate(record).to_text(), False)
    return files


def _hex(value: Any) -> bool:
    s = str(value) if value is not None else ""
    return 7 <= len(s) <= 40 and all(c in "0123456789abcdefABCDEF" for c in s)


def _version_differs(runs: dict[str, Run]) -> bool:
    """The runs were trained on different sd-scripts commits: then every variant pins its own (the baseline's, or
    the one its change sets), so that a variant without the version change does not train on whatever the checkout
    holds today."""
    return len({str(c) for r in runs.values() if _hex(c := r.value("sd_scripts_commit"))}) > 1


def _variant_commit(v: VariantSpec, run: Run) -> str | None:
    commit = next((c.to for c in v.changes if c.param == "sd_scripts_commit"), run.value("sd_scripts_commit"))
    return str(commit) if _hex(commit) else None


def write_variants(variants: list[VariantSpec], runs: dict[str, Run], out: Path, backend: str = "kohya",
                   sd_scripts: str = "sd-scripts", force: bool = False, log: bool = False) -> list[Path]:
    """One folder per variant: config.toml (+ dataset.toml), the runner, variant.json (+ the user's script,
    edited). Nothing is written if a file it would replace was edited by hand (unless ``force``)."""
    commit(Path(out), render_variants(variants, runs, out, backend, sd_scripts, log), force)
    return [Path(out) / v.id for v in variants]


def _edited_script(run: Run, v: VariantSpec, d: Path, output_name: str, lay: Layout | None = None,
                   log: bool = False) -> tuple[str | None, dict[str, str]]:
    """When the baseline is a script: (its name in the variant folder, {file: text}) with only the changed lines
    edited, for people who launch their own script. With ``--config_file`` next to it, only the values the script
    itself sets are edited there (the rest is in the config copy), and ``--config_file``/``--dataset_config`` are
    pointed at the variant's copies when they do not name them already. The copy keeps the script's name unless
    that is the name of a file the tool writes (then ``own-<name>``). No copy when it is not a script or not
    editable as text: a note says why."""
    from lora_audit.ablate.script_edit import ScriptEditError, edit_script, rename_script

    lay = lay or layout_of(run)
    if lay.script is None:
        return None, {}
    path = lay.script
    lines = {}
    for name in run.params:
        where, line = lay.where(run, name)
        if where == "script" and line is not None:
            lines[name] = line
    edits = {c.param: (_toml_value(c.param, c.to), _removes(c, v.script))
             for c in v.changes if c.param not in _NOT_WRITTEN and not c.via
             and (not lay.config_from_script or c.param in lines)}
    outputs = {"output_dir": str((d / "output").resolve()), "output_name": output_name}
    if _logs(run, lay, log) is not None:
        outputs["logging_dir"] = str((d / "logs").resolve())
    for key, value in outputs.items():
        if not lay.config_from_script or key in lines:
            edits[key] = (value, False)
    for key, copy in (("config_file", "config.toml"), ("dataset_config", "dataset.toml")):
        p = run.params.get(key)
        given = Path(str(p.value)) if p is not None else None
        if key in lines and given is not None and (given.name != copy or given.parent != Path(".")):
            edits[key] = (str((d / copy).resolve()), False)
    try:
        text = edit_script(read_evidence(path), lay.script_kind or "shell", edits, lines)
        # the variant's trainer (an architecture change: flux_train_network.py, sd3_train_network.py...), also
        # when the other run named no script (a config TOML: its architecture's script, ablate.plan._script_of)
        own = run.value("training_script")
        if own and v.script and v.script != own:
            text = rename_script(text, str(own), str(v.script))
    except (ScriptEditError, EvidenceError) as e:
        return None, {"script-not-edited.txt": f"{comment_text(path.name)} could not be edited as text: "
                                               f"{comment_text(str(e))}\nconfig.toml and {RUNNER} hold the variant.\n"}
    name = _script_copy_name(path)
    return name, {name: text}


def write_study(plan: AblationPlan, runs: dict[str, Run], out: Path, backend: str = "kohya",
                sd_scripts: str = "sd-scripts", inputs: Sequence[str | Path] = (), force: bool = False,
                also: Sequence[VariantSpec] = (), log: bool = False) -> list[Path]:
    """Write the study folder; returns the variant folders. ``also``: variants written with it but not listed in
    study.toml (a bisection's first round, which bisect.json lists). ``log``: give every variant a logging_dir
    (``logs``) even where the baseline had none.

    ``out`` must be new, empty, or a study of this tool, and outside every run folder and every folder in
    ``inputs``; it is refused when it holds a different study, or when a file about to be replaced was edited since
    lora-audit wrote it (unless ``force``). Every file is rendered before anything is written."""
    out = Path(out)
    check_out(out, [*(r.path for r in runs.values() if r.path), *inputs])
    if (out / STUDY_FILE).is_file():
        old = read_study_meta(out)
        if old.good != plan.good or sorted(old.bad) != sorted(plan.bad):
            raise EvidenceError(f"{STUDY_FILE} belongs to another study ({comment_text(old.good)} vs "
                                f"{comment_text(', '.join(old.bad))}); choose another --out", str(out / STUDY_FILE))
    files = render_variants(plan.variants + list(also), runs, out, backend, sd_scripts, log, reuse_baseline=False)
    doc = Study(good=plan.good, bad=plan.bad, strategy=plan.strategy, backend=backend,  # type: ignore[arg-type]
                sd_scripts=sd_scripts,
                log=log, variants=[v.id for v in plan.variants],
                runs={name: str(Path(r.path).resolve()) if r.path else "" for name, r in runs.items()}).document()
    tomllib.loads(tomlkit.dumps(doc))  # what we write must parse
    commit(out, files, force, study_doc=doc)
    return [out / v.id for v in plan.variants]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
