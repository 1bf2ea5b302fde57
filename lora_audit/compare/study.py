"""``--study runs/<study>``: the base model, prompts and LoRAs of an ablation study (no torch: stdlib and the
study models).

A study (lora_audit.ablate.emit.write_study) has study.toml (``variants``) and one folder per variant whose
config.toml names ``output_dir`` and ``output_name`` (relative to the variant folder: the runner passes it so), and
whose evidence (config.toml, the user's edited script) names ``pretrained_model_name_or_path``, relative to the
run's folder where the runner runs kohya (variant.json ``run_dir``). kohya names the final file
``<output_name>.safetensors`` and per-epoch files ``<output_name>-<epoch:06d>.safetensors``
(train_util.get_epoch_ckpt_name)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lora_audit.compare.spec import LoraSpec
from lora_audit.errors import EvidenceError
from lora_audit.study_model import load_study, load_variant


@dataclass
class StudyInputs:
    base: Path
    prompts: list[str]
    loras: list[LoraSpec]
    missing: list[str] = field(default_factory=list)  # variants with no trained LoRA yet


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise EvidenceError(f"cannot read: {e.strerror}", str(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise EvidenceError(f"not TOML: {e}", str(path)) from None


def sample_prompts(path: Path) -> list[str]:
    """kohya's sample prompt file: one prompt a line, options after `` --`` (``--n`` negative, ``--d`` seed...)."""
    if path.suffix in (".toml", ".json"):
        return []  # structured sample prompt files are left to --prompts
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = re.split(r"\s--\w", " " + line.strip(), maxsplit=1)[0].strip()
        if text and not text.startswith("#"):
            out.append(text)
    return out


def study_inputs(study: Path, epochs: bool = False, strengths: tuple[float, ...] = (1.0,)) -> StudyInputs:
    study = Path(study)
    meta = load_study(study)
    base: Path | None = None
    prompts: list[str] = list(meta.prompts)
    loras: list[LoraSpec] = []
    missing: list[str] = []
    ids = list(meta.variants)
    if (study / "bisect.json").is_file():  # a bisection's variants are written round by round
        from lora_audit.ablate.study import load

        ids += [t.id for r in load(study).state.rounds for t in r.tests if t.id not in ids]
    for vid in ids:
        d = study / vid
        cfg_file = d / "config.toml"
        if not cfg_file.is_file():
            missing.append(vid)
            continue
        cfg = _toml(cfg_file)
        # kohya flattens a config's tables (train_util.read_config_from_file); a study's config.toml may be the
        # user's own, with [model_arguments], [training_arguments]...
        cfg = {**{k: v for t in cfg.values() if isinstance(t, dict) for k, v in t.items()},
               **{k: v for k, v in cfg.items() if not isinstance(v, dict)}}
        if base is None or not prompts:
            inputs = _inputs_dir(d)
            model, sample = _from_evidence(d, cfg)
            if base is None and model:
                base = _resolve(inputs, model)
        if not prompts and sample:
            sp = _resolve(inputs, sample)
            if sp.is_file():
                prompts = sample_prompts(sp)
        out_dir = _resolve(d, cfg.get("output_dir", "output"))
        name = cfg.get("output_name", "last")
        found = False
        if epochs:
            for f in sorted(out_dir.glob(f"{name}-[0-9][0-9][0-9][0-9][0-9][0-9].safetensors")):
                epoch = int(f.stem.rsplit("-", 1)[1])
                loras.append(LoraSpec(f, strengths, label=f"{vid} e{epoch}"))
                found = True
        final = out_dir / f"{name}.safetensors"
        if final.is_file():
            loras.append(LoraSpec(final, strengths, label=vid))
            found = True
        if not found:
            missing.append(vid)
    if base is None:
        raise EvidenceError("no variant names pretrained_model_name_or_path (in its config.toml or its script)",
                            str(study / "study.toml"))
    if not loras:
        raise EvidenceError(f"no trained LoRA in the study yet (looked in {len(missing)} variants' output_dir): "
                            "train the variants first", str(study))
    return StudyInputs(base, prompts, loras, missing)


def _from_evidence(d: Path, cfg: dict) -> tuple[str | None, str | None]:
    """(base model, sample prompt file) a variant trains with, as kohya sees them: the variant's evidence read as
    a run (its config.toml and the user's edited script, whose flags win over the config as on kohya's command
    line), so a model set by ``--pretrained_model_name_or_path`` in the script is found; config.toml alone when
    the folder cannot be read as a run."""
    from lora_audit.evidence.run import load_run

    values = {k: cfg.get(k) for k in ("pretrained_model_name_or_path", "sample_prompts")}
    record = load_variant(d)
    script = record.edited_script if record else None
    # the script alone (it names the config it runs with), never the folder: output/ holds the trained LoRAs
    evidence = d / script if isinstance(script, str) and script and "/" not in script and "\\" not in script \
        else d / "config.toml"
    try:
        run = load_run(evidence) if evidence.is_file() else None
    except (EvidenceError, OSError, ValueError, RecursionError):
        run = None
    if run is not None:
        for k in values:
            p = run.params.get(k)
            if p is not None and p.origin == "explicit" and p.value:
                values[k] = p.value
    return (str(values["pretrained_model_name_or_path"]) if values["pretrained_model_name_or_path"] else None,
            str(values["sample_prompts"]) if values["sample_prompts"] else None)


def _inputs_dir(d: Path) -> Path:
    """Where the variant's relative input paths (base model, prompts) resolve: the runner runs kohya in the run's
    own folder (variant.json ``run_dir``, ablate.emit.runner_script); studies written before it ran in the
    variant folder. Outputs are always the variant's own (the runner passes an absolute --output_dir)."""
    record = load_variant(d)
    run_dir = record.run_dir if record else None
    return Path(run_dir) if run_dir and Path(run_dir).is_dir() else d


def _resolve(folder: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (folder / p)


# Where `compare --study` wrote its comparisons, so that `audit --study` finds one written outside the study too.
COMPARISONS_FILE = "comparisons.json"


def record_comparison(study: Path, out: Path) -> None:
    """Note ``out`` (a comparison folder) in the study; one written inside it is found without a note."""
    import json
    import os

    study, out = Path(study), Path(out).resolve()
    if not study.is_dir() or out.is_relative_to(study.resolve()):
        return
    f = study / COMPARISONS_FILE
    known = _recorded(study)
    if str(out) in known:
        return
    tmp = f.with_name(f".{f.name}.tmp")
    tmp.write_text(json.dumps({"comparisons": known + [str(out)]}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, f)  # atomic: a crash never leaves half a list


def _recorded(study: Path) -> list[str]:
    import json

    f = Path(study) / COMPARISONS_FILE
    if not f.is_file():
        return []
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        raise EvidenceError("not the list of comparisons lora-audit writes (remove it, then run compare --study "
                            "again)", str(f)) from None
    items = data.get("comparisons") if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise EvidenceError("not the list of comparisons lora-audit writes: 'comparisons' must be a list of paths",
                            str(f))
    return items


def study_comparisons(study: Path | str) -> list[Path]:
    """Every comparison of a study: folders inside it with a comparison.json (two levels deep at most) and the
    ones `compare --study ... --out DIR` wrote elsewhere (recorded in comparisons.json)."""
    study = Path(study)
    if not study.is_dir():
        raise EvidenceError("study folder not found", str(study))
    found = sorted({p.parent for pattern in ("comparison.json", "*/comparison.json", "*/*/comparison.json")
                    for p in study.glob(pattern)})
    missing = []
    for item in _recorded(study):
        p = Path(item)
        if (p / "comparison.json").is_file():
            if p.resolve() not in {f.resolve() for f in found}:
                found.append(p)
        else:
            missing.append(item)
    if not found:
        gone = f" (recorded but gone: {', '.join(missing)})" if missing else ""
        raise EvidenceError("no comparison in this study yet (no comparison.json): run lora-audit compare --study "
                            f"on it first, or pass --compare DIR{gone}", str(study))
    return found
