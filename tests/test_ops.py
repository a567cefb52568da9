"""Every operator of the table against its math, and its gradient; the documented choices where the paper is silent."""
import math

import numpy as np
import pytest
import torch

from search.language.ops import BINARY, BINARY_BY_NAME, EPS, UNARY, UNARY_BY_NAME

# Independent references (numpy / math), written from the paper's formulas, beta given explicitly.
UNARY_MATH = {
    "x": lambda x, b: x,
    "neg": lambda x, b: -x,
    "abs": lambda x, b: np.abs(x),
    "square": lambda x, b: x ** 2,
    "cube": lambda x, b: x ** 3,
    "sqrt": lambda x, b: np.sqrt(np.maximum(x, EPS)),
    "scale": lambda x, b: b * x,
    "shift": lambda x, b: x + b,
    "log_abs": lambda x, b: np.log(np.abs(x) + EPS),
    "exp": lambda x, b: np.exp(x),
    "sin": lambda x, b: np.sin(x),
    "cos": lambda x, b: np.cos(x),
    "sinh": lambda x, b: np.sinh(x),
    "cosh": lambda x, b: np.cosh(x),
    "tanh": lambda x, b: np.tanh(x),
    "asinh": lambda x, b: np.arcsinh(x),
    "atan": lambda x, b: np.arctan(x),
    "sinc": lambda x, b: np.array([math.sin(v) / v if v != 0 else 1.0 for v in x]),
    "relu": lambda x, b: np.maximum(x, 0),
    "min0": lambda x, b: np.minimum(x, 0),
    "sigmoid": lambda x, b: 1 / (1 + np.exp(-x)),
    "softplus": lambda x, b: np.log1p(np.exp(x)),
    "gauss": lambda x, b: np.exp(-x ** 2),
    "erf": lambda x, b: np.array([math.erf(v) for v in x]),
    "beta": lambda x, b: np.full_like(x, b),
}
BINARY_MATH = {
    "add": lambda a, c, b: a + c,
    "mul": lambda a, c, b: a * c,
    "sub": lambda a, c, b: a - c,
    "div": lambda a, c, b: a / (c + EPS),
    "max": lambda a, c, b: np.maximum(a, c),
    "min": lambda a, c, b: np.minimum(a, c),
    "sigmul": lambda a, c, b: c / (1 + np.exp(-a)),
    "gauss_diff": lambda a, c, b: np.exp(-b * (a - c) ** 2),
    "laplace_diff": lambda a, c, b: np.exp(-b * np.abs(a - c)),
    "mix": lambda a, c, b: b * a + (1 - b) * c,
}

POINTS = np.linspace(-4.5, 4.5, 37)  # includes 0
OTHER = np.cos(np.arange(37.0)) * 3


def test_the_table_is_the_papers_space():
    assert len(UNARY) == 25 and len(BINARY) == 10
    assert set(UNARY_MATH) == {op.name for op in UNARY}
    assert set(BINARY_MATH) == {op.name for op in BINARY}
    assert {op.name for op in UNARY + BINARY if op.uses_beta} == {"scale", "shift", "beta", "gauss_diff",
                                                                   "laplace_diff", "mix"}


@pytest.mark.parametrize("name", sorted(UNARY_MATH))
@pytest.mark.parametrize("beta", [1.0, 0.37])
def test_unary_matches_its_math(name, beta):
    x = torch.tensor(POINTS, dtype=torch.float64)
    got = UNARY_BY_NAME[name](x, beta=torch.tensor(beta, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, UNARY_MATH[name](POINTS, beta), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(BINARY_MATH))
@pytest.mark.parametrize("beta", [1.0, 0.37])
def test_binary_matches_its_math(name, beta):
    a = torch.tensor(POINTS, dtype=torch.float64)
    c = torch.tensor(OTHER, dtype=torch.float64)
    got = BINARY_BY_NAME[name](a, c, beta=torch.tensor(beta, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, BINARY_MATH[name](POINTS, OTHER, beta), rtol=1e-10, atol=1e-12)


# Points away from every kink (0 for abs/relu/min0/sqrt/log_abs, a == c for max/min/laplace_diff).
SMOOTH_X = torch.tensor([-2.3, -0.7, 0.45, 1.3, 2.9], dtype=torch.float64)
SMOOTH_Y = torch.tensor([1.1, -1.6, 2.2, -0.4, 0.8], dtype=torch.float64)


@pytest.mark.parametrize("op", UNARY, ids=lambda op: op.name)
def test_unary_gradients(op):
    x = SMOOTH_X.abs() + 0.5 if op.name == "sqrt" else SMOOTH_X
    x = x.clone().requires_grad_(True)
    b = torch.tensor([0.8], dtype=torch.float64, requires_grad=True)
    inputs = (x, b) if op.uses_beta else (x,)
    assert torch.autograd.gradcheck(lambda *t: op(t[0], beta=t[1] if op.uses_beta else None), inputs)


@pytest.mark.parametrize("op", BINARY, ids=lambda op: op.name)
def test_binary_gradients(op):
    a = SMOOTH_X.clone().requires_grad_(True)
    c = SMOOTH_Y.clone().requires_grad_(True)
    b = torch.tensor([0.8], dtype=torch.float64, requires_grad=True)
    inputs = (a, c, b) if op.uses_beta else (a, c)
    assert torch.autograd.gradcheck(lambda *t: op(t[0], t[1], beta=t[2] if op.uses_beta else None), inputs)


def test_sqrt_of_negative_is_flat_with_finite_gradient():
    # Documented choice: sqrt(x) = sqrt(max(x, eps)); ReLU-like units emit exact zeros, which must not give inf/NaN.
    x = torch.tensor([-3.0, -1e-9, 0.0, 1e-9], requires_grad=True)
    y = UNARY_BY_NAME["sqrt"](x)
    y.sum().backward()
    assert torch.allclose(y, torch.full_like(y, math.sqrt(EPS)))
    assert torch.isfinite(x.grad).all() and (x.grad == 0).all()


def test_sinc_is_unnormalised_and_one_at_zero():
    x = torch.tensor([0.0, math.pi, 2 * math.pi, 1.0], requires_grad=True)
    y = UNARY_BY_NAME["sinc"](x)
    assert y[0].item() == 1.0
    assert abs(y[1].item()) < 1e-6 and abs(y[2].item()) < 1e-6  # zeros at multiples of pi, not of 1
    assert abs(y[3].item() - math.sin(1.0)) < 1e-6
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0].item() == 0.0


def test_eps_protects_log_and_division_at_zero():
    zero = torch.zeros(3)
    assert torch.isfinite(UNARY_BY_NAME["log_abs"](zero)).all()
    assert torch.allclose(UNARY_BY_NAME["log_abs"](zero), torch.full((3,), math.log(EPS)))
    assert torch.allclose(BINARY_BY_NAME["div"](torch.ones(3), zero), torch.full((3,), 1 / EPS))
