"""The files of a study folder as models: ``study.toml`` (:class:`Study`) and each variant's ``variant.json``
(:class:`Variant`), with the one loader of each. ``ablate`` writes them; ``bisect``, ``launch`` and ``compare`` read
them back through :func:`load_study` / :func:`load_variant`, so a damaged file is the same one line
(``error: <file>: ...``, exit 2) whichever command meets it first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import tomlkit
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lora_audit.ablate.files import STUDY_CAP, STUDY_FILE, check_id, comment_text, parse_toml, read_text
from lora_audit.errors import EvidenceError

VARIANT_FILE = "variant.json"
RUNNERS = ("lora-audit-run.sh", "train.sh")  # the tool's runner; train.sh in studies written before it had a name


class Study(BaseModel):
    """``study.toml``: the runs compared, the strategy, the backend and the variants (other keys are ignored).

    A study written by ``lora-audit ablate`` has every field; a hand-made one (a list of variant folders to launch
    or compare) may have only ``variants``. ``written`` (the sha256 of each file ablate wrote) is kept by
    ``ablate.files.commit``."""

    model_config = ConfigDict(extra="ignore")

    good: str | None = None
    bad: list[str] = Field(default_factory=list)
    strategy: str = ""
    backend: Literal["kohya", "builtin"] = "kohya"
    sd_scripts: str = "sd-scripts"
    log: bool = False  # every variant gets a logging_dir (ablate --log)
    variants: list[str] = Field(default_factory=list)
    runs: dict[str, str] = Field(default_factory=dict)
    prompts: list[str] = Field(default_factory=list)  # compare --study: prompts when no sample_prompts file says
    written: dict[str, str] = Field(default_factory=dict)

    @field_validator("bad", mode="before")
    @classmethod
    def _one_bad(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v  # ``bad = "b"``: one bad run

    def document(self, comment: str = "lora-audit study: the runs compared, the strategy, the backend"
                 ) -> tomlkit.TOMLDocument:
        """study.toml as ablate writes it (tomlkit; ``written`` is added by ``ablate.files.commit``)."""
        doc = tomlkit.document()
        doc.add(tomlkit.comment(comment))
        for key, value in self.model_dump(exclude={"written", "prompts"}, exclude_none=True).items():
            doc[key] = value
        if self.prompts:
            doc["prompts"] = self.prompts
        return doc


def load_study(study: Path | str, need_good: bool = False) -> Study:
    """``<study>/study.toml`` read and checked: EvidenceError (one line naming the file) when it is missing, not a
    regular UTF-8 file, not TOML, or not in the shape above; ``need_good``: a study of ``ablate``/``bisect`` (it
    names its good run)."""
    path = Path(study) / STUDY_FILE
    if not path.is_file():
        raise EvidenceError("not a study folder (no study.toml): write one with `lora-audit ablate`", str(study))
    data = parse_toml(read_text(path, STUDY_FILE), path, STUDY_FILE)
    try:
        meta = Study.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top)"
        raise EvidenceError(f"study.toml is damaged: {comment_text(loc)}: {err['msg']}", str(path)) from None
    if need_good and meta.good is None:
        raise EvidenceError("study.toml is damaged: good: Field required", str(path))
    for vid in meta.variants:
        if need_good:
            check_id(vid, str(path))  # ablate's ids: letters, digits, '.', '_', '-'
        elif not vid or vid in (".", "..") or any(ch in vid for ch in "/\\\0"):
            # a hand-made study's folder names may hold spaces; never a path out of the study
            raise EvidenceError(f"{comment_text(vid)!s} is not a variant folder name", str(path))
    return meta


class VariantChange(BaseModel):
    """One change of a variant against its baseline, as variant.json lists it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    param: str
    from_: Any = Field(default=None, alias="from")
    to: Any = None
    to_origin: str | None = None
    via: str | None = None
    per_variant: bool | None = None


class Variant(BaseModel):
    """``<variant>/variant.json``: what ablate wrote the variant for and how its runner runs (keys a later version
    adds are kept). Hand-made studies may give only ``id`` and ``hash``."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    baseline: str | None = None
    changes: list[VariantChange] = Field(default_factory=list)
    hash: str | None = None  # the config hash launch uses to reuse a training of the same config
    purpose: str | None = None
    steps: int | None = None
    script: str | None = None  # the sd-scripts training script, e.g. train_network.py
    runner: str | None = None  # the tool's runner (lora-audit-run.sh; train.sh in older studies)
    run_dir: str | None = None  # where the runner runs kohya: relative inputs resolve there
    edited_script: str | None = None  # the user's script, edited, in the variant folder
    output_dir: str | None = None  # override config.toml's (hand-made variants)
    output_name: str | None = None
    save_model_as: str | None = None
    sd_scripts_commit: str | None = None  # launch trains it from a git worktree of the checkout at this commit

    def to_text(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_unset=True), indent=2,
                          default=str) + "\n"

    @property
    def runner_file(self) -> str:
        return self.runner if self.runner in RUNNERS else "train.sh"


def load_variant(folder: Path | str) -> Variant | None:
    """``<folder>/variant.json``; None when there is none (the variant is then read from its config.toml);
    EvidenceError (one line naming the file) when it is there but damaged."""
    path = Path(folder) / VARIANT_FILE
    if not path.exists() and not path.is_symlink():
        return None
    text = read_text(path, VARIANT_FILE)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise EvidenceError(f"variant.json, but not valid JSON: {e.msg}", str(path), e.lineno) from None
    except (ValueError, RecursionError) as e:  # 5,000-digit ints; deep nesting
        raise EvidenceError(f"variant.json, but not readable JSON: {type(e).__name__}", str(path)) from None
    try:
        return Variant.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(top)"
        raise EvidenceError(f"variant.json is damaged: {comment_text(loc)}: {err['msg']}", str(path)) from None


__all__ = ["STUDY_CAP", "Study", "Variant", "VariantChange", "load_study", "load_variant"]
