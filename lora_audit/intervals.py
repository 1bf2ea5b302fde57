"""Plain interval statistics (stdlib only), below every layer: the votes' statistics and bisect's seed-noise
estimate from control replicates both use them."""

from __future__ import annotations

import math

Z95 = 1.959963984540054  # the two-sided 95% normal quantile (every interval of votes.stats uses it)


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0))
    return max(0.0, center - half), min(1.0, center + half)
