"""What we know of kohya sd-scripts: the generated argument catalog and our layers on top of it."""

from lora_audit.kohya.catalog import CATEGORIES, Argument, Catalog, catalog

__all__ = ["Argument", "CATEGORIES", "Catalog", "catalog"]
