"""The boxes of the one-way flow that the evidence side produces: Setting, Evidence, Param, Run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class EpochSave(BaseModel):
    """An intermediate save of a run found beside its files (kohya's ``name-000003`` / ``name-step00000500``)."""

    file: str
    epoch: int | None = None
    step: int | None = None


class RunFacts(BaseModel):
    """What a run's evidence says beside parameters, typed. Read as attributes; ``facts["key"]``, ``"key" in
    facts`` and ``facts.get(key, default)`` also work (a key is there when its value is not None).

    The five finding lists hold each reader's own items (``key``/``name``/``flag``, ``value``, ``source``,
    ``nearest``, ``expected``, ``script``...): the ``[[fact]]`` rules of ``rules/impact.toml`` format their
    titles from those keys, so they stay mappings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    ignored_keys: list[dict[str, Any]] = Field(default_factory=list)  # config keys kohya never reads (typos)
    mistyped: list[dict[str, Any]] = Field(default_factory=list)  # config values of the wrong type for kohya
    unknown_flags: list[dict[str, Any]] = Field(default_factory=list)  # flags no kohya script has
    foreign_flags: list[dict[str, Any]] = Field(default_factory=list)  # flags of another training script
    foreign_keys: list[dict[str, Any]] = Field(default_factory=list)  # config keys of another training script
    num_processes: int | None = None  # accelerate's --num_processes (GPUs)
    # resolved datasets (evidence.dataset_toml ResolvedDataset dumps); ablate.waste's "unreadable <path>" marker
    # for a variant's dataset TOML that cannot be read
    datasets: list[dict[str, Any]] | str | None = None
    image_count: int | None = None  # run.toml [dataset] images
    repeats: int | None = None  # run.toml [dataset] repeats
    epochs: list[EpochSave] = Field(default_factory=list)  # intermediate saves beside the run's files
    training_started_at: float | None = None  # the LoRA's ss_training_started_at (Unix seconds)
    training_finished_at: float | None = None  # the LoRA's ss_training_finished_at

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, None) if key in type(self).model_fields else None
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in type(self).model_fields:
            raise KeyError(f"{key} is not a run fact (lora_audit.model.RunFacts)")
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in type(self).model_fields and getattr(self, key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


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
    facts: RunFacts = Field(default_factory=lambda: RunFacts())  # what the evidence says beside parameters

    def value(self, name: str, default: Any = None) -> Any:
        p = self.params.get(name)
        return default if p is None or p.origin == "unknown" else p.value

    def to_json(self) -> dict:
        """The shape of ``lora-audit inspect --json`` (one element of ``runs``): a parameter's ``alternatives``
        only when it has some, an artifact's empty fields left out, ``training_time`` only when known."""
        out = self.model_dump(include={"name", "verdict", "script", "evidence"})
        out["params"] = {k: p.model_dump(exclude=None if p.alternatives else {"alternatives"})
                         for k, p in self.params.items()}
        out.update(self.model_dump(include={"conflicts", "warnings"}))
        out["artifacts"] = [a.model_dump(exclude_none=True) for a in self.artifacts]
        # when training ran (the LoRA's ss_training_started_at / ss_training_finished_at, Unix seconds)
        when = self.facts.model_dump(include={"training_started_at", "training_finished_at"}, exclude_none=True)
        if when:
            out["training_time"] = when
        return out
