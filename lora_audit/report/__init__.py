"""Rendering of models: plain-text tables for the terminal, Markdown through jinja2 templates."""
