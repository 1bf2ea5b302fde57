"""The kohya_ss GUI's schedule values: learning rates, training length and warm-up, as train_model derives them.

These are the GUI fields that are not kohya arguments or do not reach kohya as they are: ``epoch`` (the GUI
counts max_train_steps from the image folders with it), ``lr_warmup`` (a percent of the total steps, passed as
steps before GUI v25 and as a ratio since), ``text_encoder_lr``/``unet_lr`` (a list, and the train-only flags).
A mixin of gui_json._Translation, which provides ``v`` (the GUI values), put/drop/warn and ``gui_facts``.
"""

from __future__ import annotations

from typing import Any

from lora_audit.kohya.gui_keys import number
from lora_audit.model import SettingOrigin


class ScheduleRules:
    v: dict[str, Any]
    raw: dict[str, Any]
    before_v25: bool
    gui_facts: dict[str, Any]

    # provided by gui_json._Translation
    def put(self, name: str, value: Any, key: str, origin: SettingOrigin = "explicit",
            note: str | None = None) -> None: ...
    def drop(self, name: str, key: str) -> None: ...
    def warn(self, message: str, key: str | None = None) -> None: ...
    def typed(self, name: str, value: Any, key: str) -> Any: ...

    def _learning_rates(self) -> None:
        lr = number(self.v.get("learning_rate"))
        te = number(self.v.get("text_encoder_lr"))
        unet = number(self.v.get("unet_lr"))
        t5 = number(self.v.get("t5xxl_lr"))
        if "text_encoder_lr" in self.v:
            if te > 0:
                # train_model writes a list, one per text encoder: [te, te], or [te, t5xxl_lr] for Flux
                self.put("text_encoder_lr", [te, t5 if t5 > 0 else te], "text_encoder_lr")
            else:
                self.drop("text_encoder_lr", "text_encoder_lr")
        if "unet_lr" in self.v:
            if unet != 0:
                self.put("unet_lr", unet, "unet_lr")
            else:
                self.drop("unet_lr", "unet_lr")
        if not (lr or te or unet) and any(k in self.v for k in ("learning_rate", "text_encoder_lr", "unet_lr")):
            self.warn("every learning rate is 0: the GUI refuses to train ('Please input learning rate values')",
                      "learning_rate")
        # lora_gui.resolve_network_train_flags
        if self.v.get("hunyuan_image_checkbox"):
            self.put("network_train_unet_only", True, "hunyuan_image_checkbox",
                     note="the GUI forces it for HunyuanImage")
        elif "text_encoder_lr" in self.v or "unet_lr" in self.v:
            key = "text_encoder_lr" if "text_encoder_lr" in self.v else "unet_lr"
            if te == 0 and unet != 0:
                self.put("network_train_unet_only", True, key,
                         note="the GUI adds it because text_encoder_lr is 0 and unet_lr is not")
            elif te != 0 and unet == 0:
                self.put("network_train_text_encoder_only", True, key,
                         note="the GUI adds it because unet_lr is 0 and text_encoder_lr is not")

    def _duration(self) -> None:
        """epoch is no kohya argument: the GUI turns it into max_train_steps by counting the image folders."""
        epoch = self.v.get("epoch") or 0
        steps = int(self.v.get("max_train_steps") or 0)
        epochs = int(self.v.get("max_train_epochs") or 0)
        self.gui_facts["epoch"] = epoch
        if "epoch" not in self.v or epochs or steps:
            return  # max_train_epochs (it beats max_train_steps in kohya) or max_train_steps is passed as it is
        if self.v.get("dataset_config"):
            self.warn(f"epoch = {epoch} is not passed with a dataset config: the GUI passes neither max_train_steps "
                      "nor max_train_epochs, so kohya trains its default 1600 steps", "epoch")
            return
        self.gui_facts["max_train_steps_formula"] = (
            f"ceil(images x repeats in train_data_dir / {self.v.get('train_batch_size', 1)} / "
            f"{self.v.get('gradient_accumulation_steps', 1)} x {epoch}"
            + (" x 2 (regularisation images)" if self.v.get("reg_data_dir") else "") + ")")
        self.put("max_train_epochs", int(epoch), "epoch", origin="inferred",
                 note=f"the GUI passes max_train_steps = {self.gui_facts['max_train_steps_formula']}, counted in the "
                      f"image folders: {epoch} passes over the data (kohya's bucketing can make them a little short)")

    def _warmup(self) -> None:
        """lr_warmup is a percent of the total steps; how it reaches kohya changed in GUI v25."""
        pct = int(self.v.get("lr_warmup") or 0)
        self.gui_facts["lr_warmup_percent"] = pct
        steps_set = self.typed("lr_warmup_steps", self.v.get("lr_warmup_steps") or 0, "lr_warmup_steps")
        override = float(steps_set) if isinstance(steps_set, (int, float)) else 0.0
        mts = int(self.v.get("max_train_steps") or 0)
        ds = bool(self.v.get("dataset_config"))
        if "lr_warmup" not in self.v and "lr_warmup_steps" not in self.v:
            return
        if not self.before_v25:
            # common_gui.resolve_lr_warmup_steps, after train_model's dataset-config branch
            if override > 0:
                if pct > 0:
                    self.warn("both lr_warmup and lr_warmup_steps are set: the GUI uses lr_warmup_steps",
                              "lr_warmup_steps")
                self.put("lr_warmup_steps", int(override), "lr_warmup_steps")
            elif pct and ds and mts > 0:
                self.put("lr_warmup_steps", round(pct * mts / 100), "lr_warmup",
                         note=f"the GUI turns lr_warmup {pct}% of max_train_steps {mts} into steps")
            elif pct:
                self.put("lr_warmup_steps", pct / 100, "lr_warmup",
                         note=f"lr_warmup {pct}%: the GUI passes the ratio, kohya multiplies it by the total steps")
            else:
                self.drop("lr_warmup_steps", "lr_warmup")
            return
        # GUI before v25: lr_warmup_steps = round(pct * max_train_steps / 100), with max_train_steps from the file,
        # or counted from the image folders, or 0 with a dataset config
        if not pct:
            self.drop("lr_warmup_steps", "lr_warmup")
        elif mts > 0:
            self.put("lr_warmup_steps", round(pct * mts / 100), "lr_warmup", origin="inferred",
                     note=f"saved by a GUI before v25, which passed round({pct}% x max_train_steps {mts}); v25+ "
                          f"passes the ratio {pct / 100}")
        elif ds:
            self.put("lr_warmup_steps", 0, "lr_warmup", origin="inferred",
                     note=f"saved by a GUI before v25: with a dataset config and no max_train_steps it passed no "
                          f"warm-up for lr_warmup {pct}%; v25+ passes the ratio {pct / 100}")
            self.warn(f"lr_warmup = {pct}% is lost by GUIs before v25 when a dataset config is used without "
                      "max_train_steps", "lr_warmup")
        else:
            self.put("lr_warmup_steps", pct / 100, "lr_warmup", origin="inferred",
                     note=f"saved by a GUI before v25, which passed round({pct}% x max_train_steps) as steps, with "
                          "max_train_steps counted from the image folders (not known here): the same warm-up as "
                          "this ratio, up to rounding")

    def _num_cycles(self) -> None:
        if "lr_scheduler_num_cycles" not in self.v:
            return
        raw = self.raw.get("lr_scheduler_num_cycles")
        if raw == "" and "epoch" in self.v:
            # train_model: `int(lr_scheduler_num_cycles) if != "" else int(epoch)`, the state the file was saved
            # in; a GUI that opens the file turns "" into 1 first (update_my_data)
            self.put("lr_scheduler_num_cycles", int(self.v["epoch"] or 0) or 1, "lr_scheduler_num_cycles",
                     origin="inferred", note="empty: the GUI that saved it passed epoch; opened in the GUI again "
                                             "it becomes 1")
            return
        n = self.typed("lr_scheduler_num_cycles", self.v["lr_scheduler_num_cycles"], "lr_scheduler_num_cycles")
        if n:
            self.put("lr_scheduler_num_cycles", n, "lr_scheduler_num_cycles",
                     note="empty in the file: the GUI opens it as 1" if raw == "" else None)
        else:
            self.drop("lr_scheduler_num_cycles", "lr_scheduler_num_cycles")
