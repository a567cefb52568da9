"""Expressions: text syntax, token strings, fingerprints, screen, modules."""
import copy
import pickle
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from search import Expression, ExpressionError, Space
from search.language.index import FunctionIndex
from search.language.kernel import activation_module
from search.language.space import format_tokens, parse_tokens

PAPER_FUNCTIONS = [
    "x * sigmoid(beta * x)", "max(x, sigmoid(x))", "cos(x) - x", "min(x, sin(x))", "atan(x)**2 - x",
    "max(x, tanh(x))", "sinc(x) + x", "x * asinh(x)**2",
]


@pytest.mark.parametrize("text", PAPER_FUNCTIONS + ["relu(x)", "-x**2", "(-x)**2", "beta * (x + beta)",
                                                    "x / (x + beta)", "-(x - x)", "x - (x - x)", "gauss_diff(x, x**3)"])
def test_text_prints_back_as_typed(text):
    assert str(Expression.parse(text)) == text


@pytest.mark.parametrize("typed, canonical", [
    ("max(x, 0)", "relu(x)"), ("min(x,0)", "min0(x)"), ("max(0, x)", "relu(x)"), ("min(0, tanh(x))", "min0(tanh(x))"),
    ("x*sigmoid(beta*x)", "x * sigmoid(beta * x)"),
    ("((x))", "x"), ("  x  +  beta ", "x + beta"),
])
def test_canonical_spelling(typed, canonical):
    assert str(Expression.parse(typed)) == canonical


def test_paper_functions_compute_their_formulas():
    x = torch.linspace(-4, 4, 81, dtype=torch.float64)
    expected = {
        "x * sigmoid(beta * x)": x * torch.sigmoid(x),
        "max(x, sigmoid(x))": torch.maximum(x, torch.sigmoid(x)),
        "cos(x) - x": torch.cos(x) - x,
        "min(x, sin(x))": torch.minimum(x, torch.sin(x)),
        "atan(x)**2 - x": torch.atan(x) ** 2 - x,
        "max(x, tanh(x))": torch.maximum(x, torch.tanh(x)),
        "sinc(x) + x": torch.where(x == 0, torch.ones_like(x), torch.sin(x) / x) + x,
        "x * asinh(x)**2": x * torch.asinh(x) ** 2,
    }
    for text, want in expected.items():
        torch.testing.assert_close(Expression.parse(text)(x), want)


def test_beta_changes_swish():
    e = Expression.parse("x * sigmoid(beta * x)")
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(e(x, beta=2.0), x * torch.sigmoid(2 * x))


@pytest.mark.parametrize("bad, fragment", [
    ("", "empty expression"),
    ("   ", "empty expression"),
    ("foo(x)", "unknown operator 'foo'"),
    ("sigmoid(x", "expected ')'"),
    ("x +", "end of text"),
    ("max(x)", "max takes 2 argument(s), got 1"),
    ("sin(x, x)", "sin takes 1 argument(s), got 2"),
    ("x ** 4", "only **2 and **3"),
    ("2 * x", "constant 2 is not in the space"),
    ("x # y", "unexpected character '#'"),
    ("x x", "unexpected 'x'"),
    ("y", "unknown name 'y': the input is x, a trainable constant is beta"),
    ("y(x)", "unknown operator 'y'"),
    ("max(0, 0)", "constant 0 is only allowed as max(a, 0)"),
    ("sin(0)", "constant 0 is not in the space"),
])
def test_bad_text_names_the_problem_and_column(bad, fragment):
    with pytest.raises(ExpressionError) as info:
        Expression.parse(bad)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    if bad.strip():
        assert "column" in message


def test_fingerprint_equivalences():
    fp = lambda t: Expression.parse(t).fingerprint()  # noqa: E731
    assert fp("sigmoid(beta*x)*x") == fp("x*sigmoid(beta*x)")
    assert fp("x*sigmoid(x)") != fp("x*sigmoid(beta*x)")
    assert fp("max(x, 0)") == fp("relu(x)") == fp("max(x, relu(x))")
    assert fp("x + x") != fp("x / x")
    assert fp("-(-x)") == fp("x + x - x")
    assert fp("sigmul(x, x)") == fp("x * sigmoid(x)")
    assert fp("x - beta * x") != fp("x - x")  # differ once beta != 1
    # (more in tests/test_fingerprint.py)


def test_screen_rejects_known_bad_functions():
    cases = {
        "x - x": "constant",
        "beta": "constant",
        "exp(-beta * (x - x)**2)": "constant",
        "beta * x": "linear",
        "x + beta": "linear",
        "x": "linear",
        "exp(exp(x))**3": "non-finite output",
        "x / (x - x)": "linear",  # x / (0 + eps)
        "exp(-exp(exp(x)))": "non-finite gradient",
        "log_abs(x - x)": "constant",
    }
    for text, reason in cases.items():
        verdict = Expression.parse(text).screen()
        assert not verdict.ok, text
        assert reason in verdict.reason, (text, verdict.reason)
    assert Expression.parse("beta * x").screen(reject_linear=False).ok
    for text in PAPER_FUNCTIONS + ["relu(x)", "tanh(x)"]:
        assert Expression.parse(text).screen().ok, text


@pytest.mark.parametrize("text", [
    "mix(x, relu(x))", "mix(relu(x), x)",  # x at beta = 1, a PReLU once beta moves: argument order does not matter
    "mix(beta * x, abs(x))", "mix(beta, x**2)", "mix(x, x**3)",
    "max(beta * x, beta * x)",  # max(b0 x, b1 x): the two betas are separate parameters
    "gauss_diff(x, beta * x)",  # exp(-b1 (1 - b0)^2 x^2): constant only while b0 = 1
])
def test_screen_passes_functions_degenerate_only_at_the_initial_beta(text):
    assert Expression.parse(text).screen().ok, text


@pytest.mark.parametrize("text, reason", [
    ("beta", "constant"), ("x", "linear"), ("beta * x", "linear"), ("x + beta", "linear"), ("-x", "linear"),
    ("mix(x, beta * x)", "linear"), ("mix(x + beta, beta)", "linear"), ("beta * x - beta * x", "linear"),
    ("mix(beta, beta)", "constant"), ("gauss_diff(x, x + beta)", "constant"),
    ("laplace_diff(x + beta, x + beta)", "constant"),
])
def test_screen_rejects_functions_degenerate_at_every_beta(text, reason):
    verdict = Expression.parse(text).screen()
    assert not verdict.ok and reason in verdict.reason, (text, verdict)


def test_screen_checks_finiteness_where_training_starts():
    # finite at beta = 1 (exp(75) in float32), infinite for 0 < beta < 0.88: training may never go there, not rejected
    assert Expression.parse("exp(x**2 / beta)**3").screen().ok
    verdict = Expression.parse("exp(exp(x) + beta)**3").screen()  # infinite at beta = 1
    assert not verdict.ok and verdict.reason == "non-finite output on [-5, 5] (beta=1.0)"


@pytest.mark.parametrize("shape", [(4, 3), (4, 3, 7), (4, 3, 5, 5)])
def test_module_has_per_channel_betas(shape):
    m = activation_module(Expression.parse("max(x, beta * x) + x * sigmoid(beta * x)"), compile=False)
    x = torch.randn(*shape)
    y = m(x)
    assert y.shape == x.shape
    assert m.beta.shape == (2, 3) and torch.all(m.beta == 1)
    # each channel's beta acts on that channel only
    with torch.no_grad():
        m.beta[1, 2] = 3.0
    y2 = m(x)
    assert torch.equal(y2[:, :2], y[:, :2]) and not torch.equal(y2[:, 2], y[:, 2])
    y2.sum().backward()
    assert m.beta.grad.shape == (2, 3)


def test_module_with_explicit_channels_and_pickle():
    m = activation_module(Expression.parse("x * sigmoid(beta * x)"), channels=8, compile=False)
    assert m.beta.shape == (1, 8)
    with torch.no_grad():
        m.beta.uniform_(0.5, 2.0)
    x = torch.randn(2, 8, 3, 3)
    clone = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(clone(x), m(x))
    lazy = pickle.loads(pickle.dumps(activation_module(Expression.parse("x + beta"), compile=False)))
    assert lazy(torch.randn(2, 5)).shape == (2, 5) and lazy.beta.shape == (1, 5)
    assert activation_module(Expression.parse("relu(x)")).beta is None


def test_compiled_module_matches_eager():
    e = Expression.parse("cos(x) - x * sigmoid(beta * x)")
    x = torch.randn(8, 4, 6, requires_grad=True)
    eager, fused = activation_module(e, channels=4, kernel="eager"), activation_module(e, channels=4, compile=True)
    y1, y2 = eager(x), fused(x)
    torch.testing.assert_close(y1, y2)
    g1 = torch.autograd.grad(y1.sum(), (x, eager.beta))
    g2 = torch.autograd.grad(y2.sum(), (x, fused.beta))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


def test_compile_failure_falls_back_to_eager(monkeypatch):
    from search.language import kernel as kernel_module

    def broken(fn, **kwargs):
        def call(*args):
            raise RuntimeError("no C++ compiler")
        return call

    monkeypatch.setattr(kernel_module.torch, "compile", broken)
    m = activation_module(Expression.parse("sin(x) + x * x"), compile=True)
    x = torch.randn(3, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = m(x)
    torch.testing.assert_close(y, torch.sin(x) + x * x)
    assert any("running eager" in str(w.message) for w in caught)
    assert kernel_module.kernel(Expression.parse("sin(x) + x * x"), True).failed.startswith("RuntimeError")


def test_all_one_unit_strings_round_trip():
    space = Space(1)
    assert space.size == 6250
    count = 0
    for tokens in space.enumerate():
        expr = space.decode(tokens)
        text = str(expr)
        again = Expression.parse(text)
        assert str(again) == text, tokens
        assert again.fingerprint() == expr.fingerprint(), tokens
        count += 1
    assert count == 6250


@st.composite
def token_strings(draw):
    space = Space(draw(st.integers(1, 3)))
    return space, tuple(draw(st.sampled_from(choices)) for choices in space.choices)


@settings(max_examples=300, deadline=None)
@given(token_strings())
def test_random_token_strings_round_trip(case):
    space, tokens = case
    expr = space.decode(tokens)
    text = str(expr)
    again = Expression.parse(text)
    assert str(again) == text
    assert again.fingerprint() == expr.fingerprint()
    # a token string the space proposes re-encodes to a token string computing the same function
    encoded = FunctionIndex.of(space).encode(again)
    assert encoded is not None
    assert space.decode(encoded).fingerprint() == expr.fingerprint()
    assert parse_tokens(format_tokens(tokens)) == tokens


def test_bad_token_strings():
    space = Space(2)
    with pytest.raises(ExpressionError, match="has 10 tokens"):
        space.decode(("x",) * 5)
    with pytest.raises(ExpressionError, match="input of unit 0"):
        space.decode(("u0", "x", "x", "x", "add") + ("x", "x", "x", "x", "add"))
    with pytest.raises(ExpressionError, match="unknown unary operator 'foo'"):
        Space(1, unary=("x", "foo"))
    with pytest.raises(ExpressionError, match="binary subset is empty"):
        Space(1, binary=())


def test_subsets_and_unit_inputs():
    space = Space(3, unary=("x", "sin"), binary=("add", "mul"))
    assert space.choices[0] == ("x",) and space.choices[5] == ("x", "u0") and space.choices[10] == ("x", "u0", "u1")
    assert space.size == (2 * 2 * 2) * (2 * 2 * 2 * 2 * 2) * (3 * 3 * 2 * 2 * 2)
    expr = space.decode(("x", "x", "sin", "x", "add", "u0", "x", "x", "sin", "mul", "u1", "u0", "x", "x", "add"))
    assert str(expr) == "(sin(x) + x) * sin(x) + (sin(x) + x)"


def test_an_activation_module_copied_or_pickled_looks_its_kernel_up_again():
    """The module keeps the kernel it resolved for a device (one lookup per device, not per call); a copy or a pickle
    leaves that behind (a kernel holds the process's compiled code) and computes the same values."""
    act = activation_module(Expression.parse("x * sigmoid(beta * x)"), 3, kernel="eager")
    x = torch.randn(2, 3, 4)
    y = act(x)
    assert list(act._kernels) == [x.device]
    for other in (copy.deepcopy(act), pickle.loads(pickle.dumps(act))):
        assert other._kernels == {}
        assert torch.equal(other(x), y)


@pytest.mark.parametrize("text, written", [("square(x)", "x**2"), ("neg(x)", "-x"), ("add(x, sin(x))", "x + x"),
                                           ("scale(x)", "beta * x")])
def test_a_token_name_used_as_a_call_says_how_it_is_written(text, written):
    """``expr`` prints token forms (``x x atan atan mul``) and ``space --list`` operator names (square, add, ...): typed
    back as calls, they are named as token names with the expression that writes them."""
    with pytest.raises(ExpressionError, match="token name") as err:
        Expression.parse(text)
    assert f"is {written} " in str(err.value)
