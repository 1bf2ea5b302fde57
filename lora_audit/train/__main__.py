"""``python -m lora_audit.train --config_file config.toml [kohya flags]``: the trainer without the CLI group,
so generated ``train.sh`` files can call it the way they call kohya's ``train_network.py``."""

from lora_audit.commands.train import train

if __name__ == "__main__":  # pragma: no cover
    train(prog_name="python -m lora_audit.train")
