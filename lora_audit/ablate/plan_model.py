"""The plan's models: a parameter change, an atomic change set, a variant to train, a skipped variant and the
AblationPlan itself (what ``plan --json``, variant.json and the report read). lora_audit.ablate.plan builds them."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer

__all__ = ["AblationPlan", "ChangeSet", "ParamChange", "SkippedVariant", "VariantSpec"]


class ParamChange(BaseModel):
    param: str
    from_: Any = Field(None, alias="from")
    to: Any = None
    to_origin: str = "explicit"  # explicit / default (the key is removed) / inferred
    # "dataset_config": the value comes with the bad run's dataset TOML (the variant uses that file), so it is
    # not written into the config
    via: str | None = None

    model_config = {"populate_by_name": True}

    @model_serializer(mode="wrap")
    def _without_empty_via(self, handler):  # "via" only where a change has one, in every dump
        out = handler(self)
        if not self.via:
            out.pop("via", None)
        return out

    def dump(self) -> dict:
        """The change as plan --json, variant.json and the report show it (``from``, not ``from_``)."""
        return self.model_dump(by_alias=True)


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
        return {**self.model_dump(by_alias=True), "hash": self.hash}


class SkippedVariant(BaseModel):
    """A variant the plan does not train: kohya would ignore its changes, or another variant trains the same."""

    id: str
    kind: Literal["inert", "duplicate"]
    reason: str
    changes: list[ParamChange] = Field(default_factory=list)
    same_as: str | None = None  # the variant that stands for a duplicate

    def dump(self) -> dict:
        return self.model_dump(by_alias=True)


class AblationPlan(BaseModel):
    good: str
    bad: list[str]
    strategy: str
    change_sets: list[ChangeSet]
    variants: list[VariantSpec]
    excluded: list[str] = Field(default_factory=list)  # changes that cannot be ablated, with the reason
    skipped: list[SkippedVariant] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    seconds_per_step: float | None = None

    def gpu_hours(self) -> float | None:
        steps = [v.steps for v in self.variants]
        if self.seconds_per_step is None or any(s is None for s in steps):
            return None
        return round(sum(s for s in steps if s is not None) * self.seconds_per_step / 3600, 2)

    def to_json(self) -> dict:
        return {"good": self.good, "bad": self.bad, "strategy": self.strategy,
                "change_sets": [{"id": c.id, "params": c.params, "atomic_reason": c.atomic_reason,
                                 "changes": [x.dump() for x in c.changes]} for c in self.change_sets],
                "variants": [v.dump() for v in self.variants], "excluded": self.excluded,
                "skipped": [x.dump() for x in self.skipped], "notes": self.notes,
                "seconds_per_step": self.seconds_per_step, "gpu_hours": self.gpu_hours()}
