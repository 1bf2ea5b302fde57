"""Markdown report templates, shipped inside the wheel as lora_audit._templates (see pyproject.toml)."""
