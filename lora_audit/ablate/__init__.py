"""Ablation studies: plans of minimal-change variants (plan.py), their files (emit.py), bisection (bisect.py)."""
