"""``comparison.json`` as a model (pydantic only, no torch): what ``lora-audit compare`` writes
(:func:`lora_audit.compare.export.to_json` builds a :class:`Comparison` and dumps it) and what ``vote``, ``stats``,
``export``, ``audit --study`` and the report read back (:func:`lora_audit.votes.data.read_comparison_json`
validates with it). The shape is the comparison guide's schema, extended; keys a later version adds are kept
(``extra="allow"``) and exported as they are. Types are strict where a reader would trip on a wrong one: a careless
or hostile file is one line naming the file and the key, never a traceback."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Finite = Annotated[float, Field(allow_inf_nan=False)]
Scalar = StrictBool | StrictInt | float | str | None


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Shot(_Open):
    """One model's image of one (prompt, seed)."""

    name: StrictStr
    image: StrictStr  # relative to the comparison folder
    lora: StrictStr | None = None
    lora_strength: Finite | None = None
    base_model: StrictStr | None = None
    generation_time_s: Finite | None = None
    distance_to_base: Finite | None = None
    metrics: dict[str, Scalar] | None = None
    completed_at: StrictStr | None = None


class ComparisonEntry(_Open):
    """One (prompt, seed): every model's image of it, base first."""

    comparison_id: StrictStr | StrictInt
    prompt: StrictStr
    seed: StrictInt
    models: list[Shot] = Field(min_length=1)
    winner: Scalar = None
    notes: Scalar = None


class ModelStats(_Open):
    """One row (the base, or one LoRA at one strength): timing, distance to base, mean image metrics, the file."""

    model_name: StrictStr | None = None
    lora: StrictStr | None = None
    lora_strength: Finite | None = None
    timing: dict[str, StrictInt | Finite | None] | None = None
    distance_to_base: dict[str, Finite | None] | None = None
    metrics: dict[str, Scalar] | None = None
    fd_clip: Finite | None = None  # Fréchet distance (CLIP embeddings) to the --reference images
    lora_size_bytes: StrictInt | None = None
    lora_parameters: StrictInt | None = None
    lora_arch: StrictStr | None = None
    modules_in_file: StrictInt | None = None
    modules_matched: StrictInt | None = None
    modules_unmatched: StrictInt | None = None
    lora_sha256: StrictStr | None = None


class ComparisonStatistics(_Open):
    total_comparisons: StrictInt | None = None
    comparisons_with_preference: StrictInt | None = None
    preference_rate: Finite | None = None
    model_wins: list[Any] | None = None
    models: list[ModelStats] | None = None
    furthest_from_base: StrictStr | None = None


class EpochScore(_Open):
    """One file of a run's series (an epoch save, or the final file) in the comparison."""

    model_name: StrictStr  # the row label
    lora: StrictStr
    epoch: StrictInt | None = None  # None: the final file (saved after the last epoch)
    metric: Finite | None = None  # the value of the rule's metric (None: no metric)
    votes: StrictInt = 0  # human votes that showed this row
    wins: StrictInt = 0
    win_rate: Finite | None = None


class EpochSeries(_Open):
    """The per-epoch files of one run or variant at one strength, and the best epoch by the rule stated."""

    series: StrictStr  # the files' common name (kohya's output_name) and the strength
    rule: StrictStr  # the rule, in words: what was compared, which way, how ties go
    metric: Literal["human_win_rate", "fd_clip", "clip_score"] | None = None
    best: StrictStr | None = None  # model_name of the pick
    best_epoch: StrictInt | None = None  # None with best set: the final file
    epochs: list[EpochScore] = Field(default_factory=list)


class Comparison(_Open):
    """comparison.json."""

    metadata: dict[str, Any] | None = None
    comparisons: list[ComparisonEntry] = Field(min_length=1)
    statistics: ComparisonStatistics | None = None
    findings: list[StrictStr] | None = None
    epochs: list[EpochSeries] | None = None  # compare --epochs: per series, the best epoch

    def to_data(self) -> dict[str, Any]:
        """The JSON object written to comparison.json (keys as set: an absent key stays absent)."""
        return self.model_dump(mode="json", exclude_unset=True)
