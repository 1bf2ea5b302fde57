"""lora-audit: audit kohya-ss sd-scripts LoRA training runs.

Library-first: everything the CLI does is a function here.

    from lora_audit.evidence import load_run
    run = load_run("runs/examples/bespoke-punks/sd15_perfect")
    run.params["network_dim"].value
"""

__version__ = "0.1.0"
