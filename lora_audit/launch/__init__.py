"""Run a study's variants in slots with durable state (``lora-audit launch`` / ``status``)."""
