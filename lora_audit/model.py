"""The boxes of the one-way flow that the evidence side produces: Setting, Evidence, Param, Run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Origin = Literal["explicit", "default", "inferred", "unknown"]
SettingOrigin = Literal["explicit", "inferred", "unknown"]  # what a file says; defaults come later
Verdict = Literal["good", "bad", "unknown"]


class Note(BaseModel):
    """A warning about the evidence: something kohya would accept silently, a flag we could not place, ..."""

    message: str
    source: str | None = None


class Alternative(BaseModel):
    """Another value the evidence allows for an inferred parameter (e.g. dim 32 at fp32 for a 72MB file)."""

    value: Any
    note: str | None = None


class Setting(BaseModel):
    """One value read from one evidence file, already under kohya's dest name and typed as kohya would."""

    name: str
    value: Any
    source: str  # "file:line" or "file:key"
    # "unknown": the evidence names the parameter but its value is only known at run time ($(...), an environment
    # variable) or depends on a branch the evidence cannot decide (then ``alternatives`` lists the candidates)
    origin: SettingOrigin = "explicit"
    note: str | None = None
    alternatives: list[Alternative] = Field(default_factory=list)


class Evidence(BaseModel):
    """What one parser made of one file."""

    path: str
    kind: str  # shell | bat | ps1 | config_toml | dataset_toml | gui_json | safetensors | notes | run_toml
    settings: list[Setting] = Field(default_factory=list)
    warnings: list[Note] = Field(default_factory=list)
    script: str | None = None  # train_network.py, sdxl_train_network.py, ...
    # True when the file is a whole training invocation, so unset parameters take kohya's defaults.
    complete: bool = False
    # Files this evidence pulled in (config_file, dataset_config): not separate evidence of the run.
    includes: list[str] = Field(default_factory=list)
    facts: dict[str, Any] = Field(default_factory=dict)  # free-form extras (file size, sha, metadata, ...)


class Param(BaseModel):
    value: Any = None
    origin: Origin = "unknown"
    source: str | None = None
    note: str | None = None
    alternatives: list[Alternative] = Field(default_factory=list)


class ConflictValue(BaseModel):
    value: Any
    source: str


class Conflict(BaseModel):
    param: str
    values: list[ConflictValue]


class Artifact(BaseModel):
    """A file the run produced, present or remembered (run.toml ``[[artifacts]]``)."""

    name: str
    size: str | int | None = None
    path: str | None = None
    note: str | None = None


class EvidenceRef(BaseModel):
    path: str
    kind: str


class Run(BaseModel):
    name: str
    verdict: Verdict = "unknown"
    script: str | None = None
    notes: str | None = None
    path: str | None = None
    evidence: list[EvidenceRef] = Field(default_factory=list)
    params: dict[str, Param] = Field(default_factory=dict)
    conflicts: list[Conflict] = Field(default_factory=list)
    warnings: list[Note] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    # what the evidence says beside parameters: ignored_keys, mistyped, unknown_flags, num_processes,
    # image_count, repeats, datasets
    facts: dict[str, Any] = Field(default_factory=dict)

    def value(self, name: str, default: Any = None) -> Any:
        p = self.params.get(name)
        return default if p is None or p.origin == "unknown" else p.value

    def to_json(self) -> dict:
        """The shape of ``lora-audit inspect --json`` (one element of ``runs``)."""
        return {
            "name": self.name,
            "verdict": self.verdict,
            "script": self.script,
            "evidence": [e.model_dump() for e in self.evidence],
            "params": {
                k: {
                    "value": p.value,
                    "origin": p.origin,
                    "source": p.source,
                    "note": p.note,
                    **({"alternatives": [a.model_dump() for a in p.alternatives]} if p.alternatives else {}),
                }
                for k, p in self.params.items()
            },
            "conflicts": [c.model_dump() for c in self.conflicts],
            "warnings": [w.model_dump() for w in self.warnings],
            "artifacts": [a.model_dump(exclude_none=True) for a in self.artifacts],
            # when training ran (the LoRA's ss_training_started_at / ss_training_finished_at, Unix seconds)
            **({"training_time": {k: self.facts[k] for k in ("training_started_at", "training_finished_at")
                                  if k in self.facts}}
               if "training_started_at" in self.facts or "training_finished_at" in self.facts else {}),
        }
