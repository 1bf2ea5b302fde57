"""AblationPlan: which variants to train to find the change that broke a run, with the fewest trainings.

Change sets come from the good→bad diff (effective changes only: nominal ones change nothing). Changes that must
travel together are made atomic, and the plan says why: the architecture switch (training script, base model,
v2/v-parameterization, SDXL-only options, and resolution when the bad run leaves it to the script's default), and
a parameter that is inert without another changed one (multires_noise_discount without multires_noise_iterations,
keep_tokens without shuffle_caption: kohya.semantics).
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
from typing import Any, Literal

from pydantic import BaseModel, Field

from lora_audit.derive import derive
from lora_audit.diff import RunDiff, diff_runs
from lora_audit.errors import EvidenceError
from lora_audit.kohya.catalog import catalog, category
from lora_audit.kohya.semantics import _data as _semantics
from lora_audit.model import Param, Run

Strategy = Literal["ofat", "reverse", "groups", "sweep", "bisect"]
# derived or evidence-only names that are not written into a kohya config
_NOT_CONFIG = {"base_architecture", "training_script", "num_repeats", "image_dir", "network_kind", "conv_dim",
               "conv_alpha", "text_encoder_included"}
# where and how files are written: every variant gets its own, so these are never ablated
_OUTPUT_ONLY = {"output_dir", "output_name", "logging_dir", "log_prefix", "wandb_run_name", "save_model_as",
                "save_every_n_epochs", "save_every_n_steps", "save_last_n_epochs", "save_state", "sample_prompts",
                "sample_every_n_epochs", "sample_every_n_steps", "sample_sampler", "training_comment"}
_ARCH = ["training_script", "base_architecture", "pretrained_model_name_or_path", "v2", "v_parameterization"]


class ParamChange(BaseModel):
    param: str
    from_: Any = Field(None, alias="from")
    to: Any = None
    to_origin: str = "explicit"  # explicit / default (the key is removed) / inferred

    model_config = {"populate_by_name": True}

    def dump(self) -> dict:
        return {"param": self.param, "from": self.from_, "to": self.to, "to_origin": self.to_origin}


class ChangeSet(BaseModel):
    id: str
    changes: list[ParamChange]
    atomic_reason: str | None = None

    @property
    def params(self) -> list[str]:
        return [c.param for c in self.changes]


class VariantSpec(BaseModel):
    id: str
    baseline: str  # run name the variant starts from
    changes: list[ParamChange]
    change_sets: list[str] = Field(default_factory=list)
    purpose: str = ""
    steps: int | None = None
    script: str = "train_network.py"

    @property
    def hash(self) -> str:
        payload = json.dumps({"baseline": self.baseline, "changes": sorted(
            (c.param, repr(c.to), c.to_origin) for c in self.changes)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def dump(self) -> dict:
        return {"id": self.id, "baseline": self.baseline, "changes": [c.dump() for c in self.changes],
                "change_sets": self.change_sets, "purpose": self.purpose, "steps": self.steps,
                "script": self.script, "hash": self.hash}


class AblationPlan(BaseModel):
    good: str
    bad: list[str]
    strategy: str
    change_sets: list[ChangeSet]
    variants: list[VariantSpec]
    excluded: list[str] = Field(default_factory=list)  # changes that cannot be ablated, with the reason
    seconds_per_step: float | None = None

    def gpu_hours(self) -> float | None:
        if self.seconds_per_step is None or any(v.steps is None for v in self.variants):
            return None
        return round(sum(v.steps for v in self.variants) * self.seconds_per_step / 3600, 2)

    def to_json(self) -> dict:
        return {"good": self.good, "bad": self.bad, "strategy": self.strategy,
                "change_sets": [{"id": c.id, "params": c.params, "atomic_reason": c.atomic_reason,
                                 "changes": [x.dump() for x in c.changes]} for c in self.change_sets],
                "variants": [v.dump() for v in self.variants], "excluded": self.excluded,
                "seconds_per_step": self.seconds_per_step, "gpu_hours": self.gpu_hours()}


def _inert_partners(name: str) -> set[str]:
    rule = _semantics().get("inert", {}).get(name)
    if not rule:
        return set()
    return {n.attr for n in ast.walk(ast.parse(rule["when"], mode="eval")) if isinstance(n, ast.Attribute)}


def change_sets(good: Run, bad: Run, diff: RunDiff | None = None) -> tuple[list[ChangeSet], list[str]]:
    """The good→bad effective changes as atomic change sets, and the changes that cannot be ablated."""
    diff = diff or diff_runs([good, bad])
    changes: dict[str, ParamChange] = {}
    excluded: list[str] = []
    unknown: dict[str, list[str]] = {}
    for c in diff.effective_changes():
        g, b = c.values[good.name], c.values[bad.name]
        if c.kind == "unknown":
            unknown.setdefault(bad.name if b.origin == "unknown" else good.name, []).append(c.param)
            continue
        changes[c.param] = ParamChange(param=c.param, **{"from": g.value}, to=b.value,
                                       to_origin="default" if b.origin == "default" else b.origin)
    for run_name, params in unknown.items():
        excluded.append(f"{len(params)} parameter(s) unknown in {run_name}, so not ablated: {', '.join(params)}")
    sets: list[ChangeSet] = []
    arch = [p for p in _ARCH if p in changes]
    if arch:
        group = [changes.pop(p) for p in arch]
        reason = "switching the architecture changes the training script and the base model together"
        if "resolution" in changes and bad.params.get("resolution", Param()).origin != "explicit":
            group.append(changes.pop("resolution"))
            reason += ", and the resolution default with them"
        target = bad.value("training_script") or ""
        only = [p for p in list(changes) if (a := catalog().get(p)) and target and target not in a.scripts
                or (a and len(a.scripts) == 1 and a.scripts[0] == target)]
        for p in only:
            group.append(changes.pop(p))
        if only:
            reason += f"; {', '.join(only)} exist only for one of the scripts"
        sets.append(ChangeSet(id="architecture", changes=group, atomic_reason=reason))
    # parameters inert without a changed partner move with it
    for name in list(changes):
        if name not in changes:
            continue
        partners = [p for p in _inert_partners(name) if p in changes and p != name]
        if partners:
            members = [changes.pop(p) for p in partners] + [changes.pop(name)]
            why = _semantics()["inert"][name]["why"]
            sets.append(ChangeSet(id=partners[0], changes=members,
                                  atomic_reason=f"{name} acts only with {', '.join(partners)} ({why})"))
    for name, ch in changes.items():
        if name in _NOT_CONFIG:
            excluded.append(f"{name}: not a training setting")
            continue
        if name in _OUTPUT_ONLY:
            excluded.append(f"{name}: where files go, set per variant")
            continue
        sets.append(ChangeSet(id=name, changes=[ch]))
    return sets, excluded


def _steps(run: Run, changes: list[ParamChange]) -> int | None:
    r = run.model_copy(deep=True)
    for c in changes:
        r.params[c.param] = Param(value=c.to, origin="explicit" if c.to_origin != "default" else "default")
    total = derive(r).get("total_optimizer_steps")
    return total.value if total is not None and total.origin != "unknown" else None


def _variant(vid: str, base: Run, changes: list[ParamChange], sets: list[str], purpose: str) -> VariantSpec:
    script = base.value("training_script") or "train_network.py"
    for c in changes:
        if c.param == "training_script":
            script = c.to
    return VariantSpec(id=vid, baseline=base.name, changes=changes, change_sets=sets, purpose=purpose,
                       steps=_steps(base, changes), script=script)


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
    try:
        return name, [cat.convert(name, v.strip()) if not arg.is_list else cat.convert(name, [v.strip()])
                      for v in values.split(",") if v.strip()]
    except ValueError as e:
        raise EvidenceError(f"--sweep: {e}") from None


def plan(good: Run, bads: list[Run], strategy: str = "ofat", sweeps: list[str] | None = None,
         control: bool = True, seconds_per_step: float | None = None) -> AblationPlan:
    """Plan the variants of a study. ``bisect`` plans only the control: rounds come from ablate.bisect."""
    all_sets: list[ChangeSet] = []
    excluded: list[str] = []
    variants: list[VariantSpec] = []
    seen: set[str] = set()

    def add(v: VariantSpec):
        if v.hash not in seen:
            seen.add(v.hash)
            variants.append(v)

    if control:
        add(_variant("control", good, [], [], f"{good.name} unchanged: measures run-to-run noise"))
    for bad in bads:
        sets, excl = change_sets(good, bad)
        excluded.extend(f"{bad.name}: {e}" for e in excl)
        suffix = f"-{_slug(bad.name)}" if len(bads) > 1 else ""
        for cs in sets:
            all_sets.append(cs.model_copy(update={"id": cs.id + suffix}))
        if strategy == "ofat":
            for cs in sets:
                add(_variant(f"ofat-{_slug(cs.id)}{suffix}", good, cs.changes, [cs.id],
                             f"{good.name} with only {', '.join(cs.params)} as in {bad.name}"))
        elif strategy == "reverse":
            for cs in sets:
                add(_variant(f"reverse-{_slug(cs.id)}{suffix}", bad, [_reverse(c, good) for c in cs.changes],
                             [cs.id], f"{bad.name} with {', '.join(cs.params)} restored from {good.name}"))
        elif strategy == "groups":
            by_cat: dict[str, list[ChangeSet]] = {}
            for cs in sets:
                key = "Model & architecture" if cs.id == "architecture" else category(cs.params[0])
                by_cat.setdefault(key, []).append(cs)
            for cat_name, group in by_cat.items():
                add(_variant(f"group-{_slug(cat_name)}{suffix}", good, [c for cs in group for c in cs.changes],
                             [cs.id for cs in group], f"{good.name} with every {cat_name} change of {bad.name}"))
    for spec in sweeps or []:
        name, values = parse_sweep(spec, good)
        current = good.value(name)
        for v in values:
            add(_variant(f"sweep-{_slug(name)}-{_slug(str(v))}", good,
                         [ParamChange(param=name, **{"from": current}, to=v)], [], f"{good.name} with {name}={v}"))
    if not [v for v in variants if v.id != "control"] and strategy != "bisect":
        raise EvidenceError(f"nothing to ablate: {good.name} and {', '.join(b.name for b in bads)} have no effective "
                            "difference that can be trained" + (f" ({'; '.join(excluded)})" if excluded else ""))
    return AblationPlan(good=good.name, bad=[b.name for b in bads], strategy=strategy, change_sets=all_sets,
                        variants=variants, excluded=excluded, seconds_per_step=seconds_per_step)


def _slug(text: str) -> str:
    out = "".join(ch.lower() if ch.isalnum() else "-" for ch in text)
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-") or "x"


def bisect_rounds_upper_bound(k: int) -> int:
    return math.ceil(math.log2(max(k, 1))) + 2
