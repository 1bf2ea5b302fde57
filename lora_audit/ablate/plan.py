"""AblationPlan: which variants to train to find the change that broke a run, with the fewest trainings.

Change sets come from the good→bad diff (effective changes only: nominal ones change nothing). Changes that must
travel together are made atomic, and the plan says why: the architecture switch (training script, base model,
v2/v-parameterization, SDXL-only options, and resolution when the bad run leaves it to the script's default), and
a parameter that is inert without another changed one (multires_noise_discount without multires_noise_iterations,
keep_tokens without shuffle_caption: kohya.semantics).

No training is wasted: a variant whose changes kohya ignores (inert in the baseline and in the variant, e.g.
bucket_no_upscale while enable_bucket is off) is skipped with the reason unless ``include_inert``; a variant whose
effective parameters equal an earlier one's (a sweep value equal to the baseline or to an OFAT variant) is trained
once, and the plan says which variant stands for it. A dataset TOML whose contents differ is one change set,
applied by using the bad run's dataset TOML (kohya reads its values before the config's).
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any, Literal

from lora_audit.ablate.plan_model import AblationPlan, ChangeSet, ParamChange, SkippedVariant, VariantSpec
from lora_audit.ablate.waste import all_or_nothing, apply, dataset_file, effective_key, inert_reason
from lora_audit.derive import derive
from lora_audit.diff import RunDiff, diff_runs
from lora_audit.errors import EvidenceError
from lora_audit.kohya.catalog import catalog, category
from lora_audit.kohya.semantics import _data as _semantics
from lora_audit.kohya.trainers import NETWORK_SCRIPT, from_network_module
from lora_audit.model import Param, Run

__all__ = ["AblationPlan", "ChangeSet", "ParamChange", "SkippedVariant", "VariantSpec", "all_or_nothing",
           "change_sets", "parse_sweep", "plan"]

Strategy = Literal["ofat", "reverse", "groups", "sweep", "bisect"]
# derived or evidence-only names that are not written into a kohya config
_NOT_CONFIG = {"base_architecture", "training_script", "num_repeats", "image_dir", "network_kind", "conv_dim",
               "conv_alpha", "text_encoder_included"}
# where and how files are written: every variant gets its own, so these are never ablated
_OUTPUT_ONLY = {"output_dir", "output_name", "logging_dir", "log_prefix", "wandb_run_name", "save_model_as",
                "save_every_n_epochs", "save_every_n_steps", "save_last_n_epochs", "save_state", "sample_prompts",
                "sample_every_n_epochs", "sample_every_n_steps", "sample_sampler", "training_comment"}
_ARCH = ["training_script", "base_architecture", "pretrained_model_name_or_path", "v2", "v_parameterization"]


def _inert_partners(name: str) -> set[str]:
    rule = _semantics().get("inert", {}).get(name)
    if not rule:
        return set()
    return {n.attr for n in ast.walk(ast.parse(rule["when"], mode="eval")) if isinstance(n, ast.Attribute)}


def change_sets(good: Run, bad: Run, diff: RunDiff | None = None, include_inert: bool = False
                ) -> tuple[list[ChangeSet], list[str]]:
    """The good→bad effective changes as atomic change sets, and the changes that cannot be ablated. A set kohya
    ignores on the good run (every change inert) is among the latter unless ``include_inert``, so a bisection
    spends no training on it."""
    diff = diff or diff_runs([good, bad])
    changes: dict[str, ParamChange] = {}
    excluded: list[str] = []
    unknown: dict[str, list[str]] = {}
    for c in diff.effective_changes():
        g, b = c.values[good.name], c.values[bad.name]
        if c.kind == "unknown" and not _absent(c.param, good if g.origin == "unknown" else bad, good, bad):
            unknown.setdefault(bad.name if b.origin == "unknown" else good.name, []).append(c.param)
            continue
        changes[c.param] = ParamChange(param=c.param, **{"from": g.value}, to=b.value,
                                       to_origin="default" if b.origin in ("default", "unknown") and c.kind == "unknown"
                                       or b.origin == "default" else b.origin)
    for run_name, params in unknown.items():
        excluded.append(f"{len(params)} parameter(s) unknown in {run_name}, so not ablated: {', '.join(params)}")
    sets: list[ChangeSet] = []
    if "dataset_config" in changes:
        sets.append(_dataset_set(good, bad, changes))
    arch_set = _architecture_set(good, bad, changes)
    if arch_set is not None:
        sets.append(arch_set)
    sets += _partner_sets(changes)
    for name, ch in changes.items():
        if name in _NOT_CONFIG:
            excluded.append(f"{name}: not a training setting")
            continue
        if name in _OUTPUT_ONLY:
            excluded.append(f"{name}: where files go, set per variant")
            continue
        sets.append(ChangeSet(id=name, changes=[ch]))
    if not include_inert:
        for cs in list(sets):
            if why := inert_reason(good, cs.changes):
                sets.remove(cs)
                excluded.append(f"{cs.id}: kohya ignores {why}; not trained")
    return sets, excluded


def _architecture_set(good: Run, bad: Run, changes: dict[str, ParamChange]) -> ChangeSet | None:
    """The architecture switch as one change set, with what cannot travel without it (taken out of ``changes``)."""
    arch = [p for p in _ARCH if p in changes]
    if not arch:
        return None
    group = [changes.pop(p) for p in arch]
    reason = "switching the architecture changes the training script and the base model together"
    if "resolution" in changes and bad.params.get("resolution", Param()).origin != "explicit":
        group.append(changes.pop("resolution"))
        reason += ", and the resolution default with them"
    target = bad.value("training_script") or _script_of(bad)
    source = good.value("training_script") or _script_of(good)
    # an argument one script's parser has and the other's lacks (--ae, --t5xxl, --guidance_scale going to
    # flux_train_network.py; SDXL-only ones going away) cannot travel alone; nor can an architecture's own
    # network module (networks.lora_flux)
    only = [p for p in list(changes) if (a := catalog().get(p)) and target and target not in a.scripts
            or (a and len(a.scripts) == 1 and a.scripts[0] == target)
            or (a and source and target and catalog().accepts(source, p) != catalog().accepts(target, p))
            or (p == "network_module" and any(from_network_module(str(v)) for v in (changes[p].from_,
                                                                                      changes[p].to)))]
    for p in only:
        group.append(changes.pop(p))
    if only:
        reason += f"; {', '.join(only)} exist only for one of the scripts or architectures"
    return ChangeSet(id="architecture", changes=group, atomic_reason=reason)


def _partner_sets(changes: dict[str, ParamChange]) -> list[ChangeSet]:
    """Parameters inert without a changed partner move with it (taken out of ``changes``)."""
    sets: list[ChangeSet] = []
    for name in list(changes):
        if name not in changes:
            continue
        partners = [p for p in _inert_partners(name) if p in changes and p != name]
        if partners:
            members = [changes.pop(p) for p in partners] + [changes.pop(name)]
            why = _semantics()["inert"][name]["why"]
            sets.append(ChangeSet(id=partners[0], changes=members,
                                  atomic_reason=f"{name} acts only with {', '.join(partners)} ({why})"))
    return sets


def _dataset_set(good: Run, bad: Run, changes: dict[str, ParamChange]) -> ChangeSet:
    """The dataset TOML's contents differ: one change set, applied by using the bad run's dataset TOML. It takes
    every changed value either run read from its dataset TOML, since kohya takes a dataset TOML's values before
    the config's (config_util.BlueprintGenerator.generate): written into config.toml they would change nothing."""
    files = {f for f in (dataset_file(good), dataset_file(bad)) if f}
    ch = changes.pop("dataset_config")
    target = dataset_file(bad)
    members = [ParamChange(param="dataset_config", **{"from": dataset_file(good) or ch.from_},
                           to=target or ch.to, to_origin=ch.to_origin)]

    def file_of(run: Run, name: str) -> str | None:
        src = run.params[name].source if name in run.params else None
        return str(Path(src.rpartition(":")[0] or src).resolve()) if src else None

    for name in list(changes):
        if any(file_of(r, name) in files for r in (good, bad)):
            ch = changes.pop(name)
            if target and file_of(bad, name) == target:
                ch = ch.model_copy(update={"via": "dataset_config"})
            members.append(ch)
    inside = [m.param for m in members[1:] if m.via]
    config = [m.param for m in members[1:] if not m.via]
    reason = (f"applied by using {bad.name}'s dataset TOML ({Path(str(target)).name if target else 'none'}): kohya "
              "takes a dataset TOML's values before the config's" + (f"; it sets {', '.join(inside)}" if inside else "")
              + (f"; {', '.join(config)} set in the config, where {bad.name} has them" if config else ""))
    return ChangeSet(id="dataset", changes=members, atomic_reason=reason)


# names that say where files go, or which file holds the settings: never part of what a variant trains
_WHERE = _OUTPUT_ONLY | {"config_file", "dataset_config", "output_config"}


def _steps(run: Run, changes: list[ParamChange]) -> int | None:
    total = derive(apply(run, changes)).get("total_optimizer_steps")
    return total.value if total is not None and total.origin != "unknown" else None


def _script_of(run: Run) -> str:
    """The LoRA training script ``run`` uses: its own, else its architecture's (a config TOML names none)."""
    return run.value("training_script") or NETWORK_SCRIPT.get(str(run.value("base_architecture")), "train_network.py")


def _absent(name: str, unknown_in: Run, good: Run, bad: Run) -> bool:
    """A value unknown in one run is absent there when that run's training script has no such argument (--ae of a
    FLUX run, unknown in an SDXL config run): a change of the architecture, not an unknown."""
    cat = catalog()
    return (name in cat and _script_of(good) != _script_of(bad) and not cat.accepts(_script_of(unknown_in), name))


def _variant(vid: str, base: Run, changes: list[ParamChange], sets: list[str], purpose: str) -> VariantSpec:
    script = _script_of(base)
    for c in changes:  # the architecture change set: its script, or its architecture's
        if c.param == "base_architecture" and c.to and not any(x.param == "training_script" for x in changes):
            script = NETWORK_SCRIPT.get(str(c.to), script)
        if c.param == "training_script":
            script = c.to
    return VariantSpec(id=vid, baseline=base.name, changes=changes, change_sets=sets, purpose=purpose,
                       steps=_steps(base, changes), script=script)


def has_explicit_settings(run: Run) -> bool:
    """Whether a variant can start from ``run``: a kohya config, or explicit values to rebuild one from (the same
    test ablate.emit.baseline_config makes before it refuses)."""
    if any(e.kind == "config_toml" for e in run.evidence):
        return True
    return any(p.origin == "explicit" and k in catalog() and k not in _NOT_CONFIG | {"config_file", "dataset_config",
                                                                                    "output_config"}
               for k, p in run.params.items())


def _reverse(ch: ParamChange, good: Run) -> ParamChange:
    origin = good.params.get(ch.param, Param()).origin
    return ParamChange(param=ch.param, **{"from": ch.to}, to=ch.from_,
                       to_origin="default" if origin == "default" else origin)


def parse_sweep(spec: str, good: Run) -> tuple[str, list[Any]]:
    """``network_dim=16,32,64`` → ("network_dim", [16, 32, 64]) typed as kohya's argparse would."""
    name, eq, values = spec.partition("=")
    name = name.strip().lstrip("-")
    cat = catalog()
    if not eq or not values.strip():
        raise EvidenceError(f"--sweep wants PARAM=V1,V2,..., got {spec!r}")
    if name not in cat:
        near = cat.nearest(name)
        raise EvidenceError(f"--sweep: unknown kohya parameter {name!r}" + (f" (did you mean {near}?)" if near else ""))
    arg = cat.get(name)
    assert arg is not None  # name in cat: checked above
    try:
        return name, [cat.convert(name, v.strip()) if not arg.is_list else cat.convert(name, [v.strip()])
                      for v in values.split(",") if v.strip()]
    except ValueError as e:
        raise EvidenceError(f"--sweep: {e}") from None


def plan(good: Run, bads: list[Run], strategy: str = "ofat", sweeps: list[str] | None = None,
         control: bool = True, seconds_per_step: float | None = None, include_inert: bool = False) -> AblationPlan:
    """Plan the variants of a study. ``bisect`` plans only the control: rounds come from ablate.bisect.

    A variant kohya would train like its baseline (inert changes) is skipped unless ``include_inert``; a variant
    that trains the same as an earlier one (same effective parameters) is skipped in favour of that one."""
    all_sets: list[ChangeSet] = []
    excluded: list[str] = []
    notes: list[str] = []
    variants: list[VariantSpec] = []
    skipped: list[SkippedVariant] = []
    trains: dict[str, str] = {}  # effective key -> the variant that trains it
    runs = {r.name: r for r in [good, *bads]}

    def add(v: VariantSpec) -> None:
        base = runs[v.baseline]
        if not include_inert and (why := inert_reason(base, v.changes)):
            skipped.append(SkippedVariant(id=v.id, kind="inert", changes=v.changes,
                                          reason=f"kohya ignores {why}; --include-inert trains it"))
            return
        key = effective_key(apply(base, v.changes), not include_inert, _WHERE)
        if key in trains:
            skipped.append(SkippedVariant(id=v.id, kind="duplicate", changes=v.changes, same_as=trains[key],
                                          reason=f"trains the same parameters as {trains[key]}"))
            return
        trains[key] = v.id
        variants.append(v)

    if control:
        add(_variant("control", good, [], [], f"{good.name} unchanged: measures run-to-run noise"))
    else:  # without a control the baseline is still not worth a training of its own
        trains[effective_key(good, not include_inert, _WHERE)] = f"{good.name} (the good run itself)"
    for bad in bads:
        sets, excl = change_sets(good, bad, include_inert=True)  # inert variants are listed as skipped below
        excluded.extend(f"{bad.name}: {e}" for e in excl)
        suffix = f"-{_slug(bad.name)}" if len(bads) > 1 else ""
        for cs in sets:
            all_sets.append(cs.model_copy(update={"id": cs.id + suffix}))
        for v in _strategy_variants(strategy, good, bad, sets, suffix, notes):
            add(v)
    for spec in sweeps or []:
        name, values = parse_sweep(spec, good)
        current = good.value(name)
        for v in values:
            add(_variant(f"sweep-{_slug(name)}-{_slug(str(v))}", good,
                         [ParamChange(param=name, **{"from": current}, to=v)], [], f"{good.name} with {name}={v}"))
    if not [v for v in variants if v.id != "control"] and strategy != "bisect":
        why = excluded + [f"{x.id}: {x.reason}" for x in skipped if x.kind == "inert"] + notes
        raise EvidenceError(f"nothing to ablate: {good.name} and {', '.join(b.name for b in bads)} have no effective "
                            "difference that can be trained" + (f" ({'; '.join(why)})" if why else ""))
    if any("sd_scripts_commit" in cs.params for cs in all_sets):
        notes.append("the runs were trained on different sd-scripts commits: every variant pins its own (variant.json "
                     "sd_scripts_commit) and `launch` runs it from a git worktree of your checkout at that commit "
                     "(<study>/sd-scripts-worktrees/; your checkout's files and branches are left alone)")
    return AblationPlan(good=good.name, bad=[b.name for b in bads], strategy=strategy, change_sets=all_sets,
                        variants=variants, excluded=excluded, skipped=skipped, notes=notes,
                        seconds_per_step=seconds_per_step)


def _strategy_variants(strategy: str, good: Run, bad: Run, sets: list[ChangeSet], suffix: str,
                       notes: list[str]) -> list[VariantSpec]:
    """The variants ``strategy`` makes of one bad run's change sets (ofat, reverse, groups; bisect makes none)."""
    if strategy == "ofat":
        return [_variant(f"ofat-{_slug(cs.id)}{suffix}", good, cs.changes, [cs.id],
                         f"{good.name} with only {', '.join(cs.params)} as in {bad.name}") for cs in sets]
    if strategy == "reverse":
        if sets and not has_explicit_settings(bad):
            # reverse variants start from the bad run's own settings; with none explicit there is nothing to
            # start from (only inferred or unknown values), so this run is left out, not the whole study
            notes.append(f"{bad.name}: skipped by --strategy reverse: it has no explicit training settings to start "
                         "from (only inferred or unknown values); --strategy ofat edits the good run instead")
            return []
        return [_variant(f"reverse-{_slug(cs.id)}{suffix}", bad, [_reverse(c, good) for c in cs.changes],
                         [cs.id], f"{bad.name} with {', '.join(cs.params)} restored from {good.name}") for cs in sets]
    if strategy == "groups":
        by_cat: dict[str, list[ChangeSet]] = {}
        for cs in sets:
            key = "Model & architecture" if cs.id == "architecture" else category(cs.params[0])
            by_cat.setdefault(key, []).append(cs)
        return [_variant(f"group-{_slug(cat_name)}{suffix}", good, [c for cs in group for c in cs.changes],
                         [cs.id for cs in group], f"{good.name} with every {cat_name} change of {bad.name}")
                for cat_name, group in by_cat.items()]
    return []


def _slug(text: str) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-") or "x"


def bisect_rounds_upper_bound(k: int) -> int:
    return math.ceil(math.log2(max(k, 1))) + 2
