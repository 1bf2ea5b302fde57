"""Bradley–Terry strengths from pairwise outcomes (stdlib only), with 95% intervals; used by ``votes.stats``."""

from __future__ import annotations

import math

from lora_audit.intervals import Z95


def bradley_terry(pairs: list[tuple[str, str, float]], z: float = Z95, tol: float = 1e-12,
                  max_iter: int = 100_000) -> dict[str, tuple[float, float, float]]:
    """Bradley–Terry strengths from pairwise outcomes ``(winner, loser, weight)`` (a tie: half a win each way), by
    Hunter's (2004) MM algorithm. Strengths are normalised to geometric mean 1 (log-strengths sum to 0), so
    P(i beats j) = s_i / (s_i + s_j). 95% intervals: exp(log-strength +- z se), se from the observed Fisher
    information of the log-strengths (its pseudo-inverse, under the sum-zero constraint).

    The maximum-likelihood fit exists only when every split of the models into two groups has a win each way
    (Ford's condition); when it fails (e.g. a model never wins, or never loses) one virtual tie between every pair
    of models is added (a weak prior) and :func:`bt_prior_used` says so."""
    models, w = _win_matrix(pairs)
    if len(models) < 2:
        return {m: (1.0, 1.0, 1.0) for m in models}
    idx = {m: i for i, m in enumerate(models)}
    k = len(models)
    if not _strongly_connected(w):
        for i in range(k):
            for j in range(k):
                if i != j:
                    w[i][j] += 0.5
    n = [[w[i][j] + w[j][i] for j in range(k)] for i in range(k)]
    wins = [sum(row) for row in w]
    s = [1.0] * k
    for _ in range(max_iter):
        new = [wins[i] / sum(n[i][j] / (s[i] + s[j]) for j in range(k) if j != i and n[i][j]) for i in range(k)]
        g = math.exp(sum(math.log(x) for x in new) / k)
        new = [x / g for x in new]
        done = max(abs(x - y) / y for x, y in zip(new, s)) < tol
        s = new
        if done:
            break
    # observed information of theta = log s: a graph Laplacian with weights n_ij p_ij p_ji
    info = [[0.0] * k for _ in range(k)]
    for i in range(k):
        for j in range(k):
            if i != j and n[i][j]:
                c = n[i][j] * s[i] * s[j] / (s[i] + s[j]) ** 2
                info[i][j] -= c
                info[i][i] += c
    cov = _pinv_laplacian(info)
    out = {}
    for m, i in idx.items():
        se = math.sqrt(max(cov[i][i], 0.0))
        out[m] = (s[i], s[i] * math.exp(-z * se), s[i] * math.exp(z * se))
    return out


def bt_prior_used(pairs: list[tuple[str, str, float]]) -> bool:
    """Whether :func:`bradley_terry` adds its virtual ties for these outcomes (no finite maximum-likelihood fit)."""
    models, w = _win_matrix(pairs)
    return len(models) >= 2 and not _strongly_connected(w)


def _win_matrix(pairs: list[tuple[str, str, float]]) -> tuple[list[str], list[list[float]]]:
    """Models (sorted) and w[i][j], the weight of i beating j."""
    models = sorted({m for a, b, _ in pairs for m in (a, b)})
    idx = {m: i for i, m in enumerate(models)}
    w = [[0.0] * len(models) for _ in models]
    for a, b, wt in pairs:
        if a != b and wt > 0:
            w[idx[a]][idx[b]] += wt
    return models, w


def _strongly_connected(w: list[list[float]]) -> bool:
    k = len(w)

    def reach(edge) -> set[int]:
        seen, todo = {0}, [0]
        while todo:
            i = todo.pop()
            for j in range(k):
                if j not in seen and edge(i, j):
                    seen.add(j)
                    todo.append(j)
        return seen

    return len(reach(lambda i, j: w[i][j] > 0)) == k and len(reach(lambda i, j: w[j][i] > 0)) == k


def _pinv_laplacian(lap: list[list[float]]) -> list[list[float]]:
    """Moore–Penrose inverse of a connected graph Laplacian L (null space: the ones vector):
    L+ = (L + J/k)^-1 - J/k, J the all-ones matrix."""
    k = len(lap)
    a = [[lap[i][j] + 1.0 / k for j in range(k)] + [1.0 if i == j else 0.0 for j in range(k)] for i in range(k)]
    for c in range(k):  # Gauss-Jordan with partial pivoting
        p = max(range(c, k), key=lambda r: abs(a[r][c]))
        a[c], a[p] = a[p], a[c]
        piv = a[c][c]
        a[c] = [x / piv for x in a[c]]
        for r in range(k):
            if r != c and a[r][c]:
                f = a[r][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[c])]
    return [[a[i][k + j] - 1.0 / k for j in range(k)] for i in range(k)]
