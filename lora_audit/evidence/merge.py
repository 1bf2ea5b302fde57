"""The evidence of one run merged into its parameters: the first source keeps a value and a disagreeing one
becomes a Conflict; kohya's old spellings, the GUI's dropped fields and, for a whole invocation, kohya's defaults."""

from __future__ import annotations

from lora_audit.kohya.catalog import catalog
from lora_audit.kohya.normalize import same
from lora_audit.kohya.recorded import agrees, recorded_agrees
from lora_audit.kohya.semantics import effective
from lora_audit.model import Conflict, ConflictValue, Evidence, Param, Run, Setting

# Parameters a reader always wants to see, even when the evidence cannot say (then: unknown).
KEY_PARAMS = [
    "training_script", "base_architecture", "pretrained_model_name_or_path", "network_module", "network_dim",
    "network_alpha", "resolution", "train_batch_size", "gradient_accumulation_steps", "learning_rate", "unet_lr",
    "text_encoder_lr", "optimizer_type", "lr_scheduler", "lr_warmup_steps", "mixed_precision", "save_precision",
    "noise_offset", "multires_noise_iterations", "adaptive_noise_scale", "min_snr_gamma", "shuffle_caption",
    "keep_tokens", "caption_extension", "max_token_length", "max_train_epochs", "max_train_steps", "seed",
]
# Arguments kohya copies into another before reading them (train_util.prepare_dataset_args:
# ``args.caption_extension = args.caption_extention`` when given; lumina/anima_train.py:
# ``args.skip_cache_check = args.skip_latents_validity_check``).
KOHYA_ALIASES = {"caption_extention": "caption_extension", "skip_latents_validity_check": "skip_cache_check"}


def gui_dropped(run: Run, evidences: list[Evidence]) -> None:
    """A kohya_ss GUI field saved as "", false or 0 never reaches kohya: ``train_model`` (kohya_gui/lora_gui.py)
    writes its TOML with ``value not in ["", False, None]``, so kohya uses its default. Known even when the file is
    a preset (not a whole invocation): origin ``default``, the source the JSON line that leaves it unset."""
    cat = catalog()
    for e in evidences:
        for name, src in (e.facts.get("kohya_defaults") or {}).items():
            have = run.params.get(name)
            arg = cat.get(name)
            if (have is not None and have.origin != "unknown") or arg is None:
                continue
            note = (e.facts.get("gui_fallbacks") or {}).get(name) or (
                "the GUI writes no \"\", false or 0 value into the TOML it trains with, so kohya uses its default")
            run.params[name] = Param(value=arg.default, origin="default", source=src, note=note)


def apply_aliases(evidences: list[Evidence]) -> None:
    """kohya's backward-compatible spellings: the value goes to the argument kohya reads (KOHYA_ALIASES)."""
    for e in evidences:
        for i, st in enumerate(e.settings):
            target = KOHYA_ALIASES.get(st.name)
            if target is None or st.value is None:
                continue
            note = f"--{st.name} is kohya's old spelling: it sets {target} (train_util.prepare_dataset_args)"
            e.settings[i] = st.model_copy(update={"name": target, "note": (st.note + "; " if st.note else "")
                                                  + note})
            # kohya copies it over whatever --caption_extension said
            e.settings[:] = [x for j, x in enumerate(e.settings) if j == i or x.name != target]


def arch_from(evidences: list[Evidence]) -> str | None:
    for e in evidences:
        settings = _architecture(e)
        if settings and not (e.script and settings[0].value in ("sd15", "sd2")):
            return settings[0].value
        if e.script:
            return None  # SD1.x or SD2.x: the file-size model tries both
    return None


def merge(run: Run, evidences: list[Evidence]) -> None:
    by_name: dict[str, list[Setting]] = {}
    for e in evidences:
        if e.script:
            by_name.setdefault("training_script", []).append(Setting(name="training_script", value=e.script,
                                                                     source=e.path))
        for arch in _architecture(e):
            by_name.setdefault("base_architecture", []).append(arch)
        for s in e.settings:
            by_name.setdefault(s.name, []).append(s)
    for name, settings in by_name.items():
        explicit = [s for s in settings if s.origin == "explicit"]
        chosen = explicit[0] if explicit else settings[0]
        # a value kohya derived or shortened when it recorded it in the LoRA is not a second value (kohya.recorded)
        epochs_set = any(s.origin == "explicit" and s.value is not None for s in by_name.get("max_train_epochs", []))
        disagreeing = [s for s in settings if s is not chosen and not same(name, s.value, chosen.value)
                       and not _compatible(s, chosen) and not recorded_agrees(name, s, chosen, epochs_set)]
        note = chosen.note
        if disagreeing:
            run.conflicts.append(Conflict(param=name, values=[ConflictValue(value=s.value, source=s.source)
                                                              for s in [chosen, *disagreeing]]))
            note = (note + "; " if note else "") + "conflicting evidence: " + ", ".join(
                f"{s.value!r} at {s.source}" for s in disagreeing)
        run.params[name] = Param(value=chosen.value, origin=chosen.origin, source=chosen.source, note=note,
                                 alternatives=chosen.alternatives)


def _compatible(other: Setting, chosen: Setting) -> bool:
    """An inferred value with alternatives does not conflict with an explicit value among its alternatives."""
    for a, b in ((other, chosen), (chosen, other)):
        if a.origin == "inferred" and any(same(a.name, alt.value, b.value) for alt in a.alternatives):
            return True
    return False


def _architecture(e: Evidence) -> list[Setting]:
    """What one piece of evidence says of the base architecture (kohya/trainers.py): the script, the network
    module, the LoRA's metadata and keys, else the base model's name. Two that disagree become a conflict."""
    from lora_audit.kohya import trainers

    found: list[tuple[str, str]] = []
    values = {s.name: s.value for s in e.settings}
    if e.facts.get("arch"):
        found.append((e.facts["arch"], e.facts.get("arch_reason") or "from the LoRA's key names and layer widths"))
    if e.script:
        by_script = trainers.from_script(e.script, bool(values.get("v2")))
        if by_script:
            found.append(by_script)
    by_module = trainers.from_network_module(values.get("network_module"))
    if by_module:
        found.append(by_module)
    if not found:
        by_name = trainers.from_model_name(values.get("pretrained_model_name_or_path"))
        if by_name:
            found.append(by_name)
    out: list[Setting] = []
    for arch, why in found:
        if all(o.value != arch for o in out):
            out.append(Setting(name="base_architecture", value=arch, source=e.path, origin="inferred",
                               note=why))
    return out


def fill_defaults(run: Run, evidences: list[Evidence]) -> None:
    cat = catalog()
    complete = any(e.complete for e in evidences)
    script = run.script or "train_network.py"
    if complete:
        for name, arg in cat.arguments.items():
            if script not in arg.scripts or name in KOHYA_ALIASES:
                continue  # an old spelling is read into its argument (apply_aliases), never shown apart
            arg = cat.get(name, script) or arg  # that script's own default (discrete_flow_shift: 3.0 FLUX, 6.0 Lumina)
            have = run.params.get(name)
            default = Param(value=arg.default, origin="default", source=None,
                            note=f"kohya's default ({script}); no evidence sets it")
            if have is None:
                run.params[name] = default
            elif have.origin == "inferred":
                # The command is complete and leaves it unset, so kohya used its default; what a file's shapes or
                # size suggest is a check of that, not a second value.
                eff = effective(name, arg.default)[0]
                options = [have.value, *(a.value for a in have.alternatives)]
                if any(same(name, effective(name, o)[0], eff) for o in options) or agrees(
                        name, have.source, have.value, None, unset=True):
                    default.note = f"{default.note}; consistent with {have.source} ({have.note or 'inferred'})"
                    run.params[name] = default
                else:
                    run.conflicts.append(Conflict(param=name, values=[
                        ConflictValue(value=arg.default, source="kohya default (the command leaves it unset)"),
                        ConflictValue(value=have.value, source=have.source or "inferred")]))
                    have.note = (have.note + "; " if have.note else "") + (
                        f"the training command leaves it unset (kohya default {arg.default!r})")
    for name in KEY_PARAMS:
        if name not in run.params:
            run.params[name] = Param(origin="unknown", note=_unknown_note(name, evidences))


def _unknown_note(name: str, evidences: list[Evidence]) -> str:
    kinds = {e.kind for e in evidences}
    if kinds <= {"run_toml"}:
        return "only a file size is known: the run's script, config or the LoRA file with its metadata would say"
    if "safetensors" in kinds:
        return "the LoRA file's metadata does not record it: the training script or config would say"
    return "no evidence sets it and the evidence is not a whole training invocation"
