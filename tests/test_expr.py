import pytest

from lora_audit.expr import ExprError, View, evaluate


def env(**runs):
    return {k: View(v) for k, v in runs.items()}


def test_arithmetic_and_comparison_over_views():
    e = env(good={"network_alpha": 16, "network_dim": 32}, bad={"network_alpha": 64, "network_dim": 128})
    assert evaluate("good.network_alpha / good.network_dim == bad.network_alpha / bad.network_dim", e) is True
    assert evaluate("ratio(bad.network_dim, good.network_dim) == 4", e) is True


def test_unknown_values_never_fire_a_rule():
    e = env(good={"a": 1}, bad={})
    assert evaluate("bad.a < good.a", e) is False
    assert evaluate("bad.a > good.a", e) is False
    assert evaluate("known(bad.a)", e) is False
    assert evaluate("bad.a / good.a", e) is None


@pytest.mark.parametrize("text", ["__import__('os')", "good.__class__", "open('x')", "(1).real"])
def test_only_safe_expressions(text):
    with pytest.raises(ExprError):
        evaluate(text, env(good={}))
