"""Impact rules, as data (``impact.toml``), and the small expression language they are written in."""
