"""``python -m lora_audit.launch launch|status ...``: the two commands without the rest of the CLI (the group is
``lora_audit.commands.launch.launch_group``; commands live in the commands layer)."""

from lora_audit.commands.launch import launch_group as main

if __name__ == "__main__":
    main()
