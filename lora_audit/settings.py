"""Where things are: the sd-scripts checkout (``--sd-scripts`` / ``LORA_AUDIT_SD_SCRIPTS`` / the submodule)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_SD_SCRIPTS = "LORA_AUDIT_SD_SCRIPTS"


def sd_scripts_path(option: str | os.PathLike | None = None) -> Path:
    """The sd-scripts location: the option, else $LORA_AUDIT_SD_SCRIPTS, else the repo's sd-scripts submodule."""
    if option:
        return Path(option)
    env = os.environ.get(ENV_SD_SCRIPTS)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "sd-scripts"
