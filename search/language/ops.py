"""The operator table: the one place where the search space's unary and binary functions are listed.

Every other module (parser, printer, compiler, fingerprint, controller vocabularies, reports, exported files) reads
this table; nothing else names an operator. The 25 unary and 10 binary functions are those of Ramachandran, Zoph & Le
(2017).

Choices the paper leaves open (tested in tests/test_ops.py):
- ``EPS = 1e-5`` in ``log(|x| + eps)`` and ``x1 / (x2 + eps)``.
- ``sqrt(x)`` is ``sqrt(max(x, EPS))``: zero-ish (``sqrt(EPS)``) for ``x < EPS`` with zero gradient there, so the gradient
  stays finite everywhere (a plain ``sqrt(relu(x))`` has an infinite gradient at the exact zeros ReLU-like units emit).
- ``sinc(x)`` is the unnormalised ``sin(x) / x`` with ``sinc(0) = 1`` (the paper's ``sinc(x) + x`` plots that way).

Printing uses precedence levels so that text re-parses to the same tree; see ``search.language.expression``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

EPS = 1e-5

# Precedence of printed forms (higher binds tighter), shared with the parser.
SUM, PRODUCT, PREFIX, POWER, ATOM = 1, 2, 3, 4, 5

# The names an operator's ``source`` may use; an exported activation file defines exactly these.
SOURCE_SCOPE = {"torch": torch, "math": math, "EPS": EPS}


@dataclass(frozen=True)
class Op:
    """One unary or binary function of the space.

    name: the token name (what controllers emit and the store records).
    arity: 1 (unary) or 2 (binary).
    math: the formula as the paper writes it, for tables and docs.
    source: the torch implementation as a Python expression: ``{0}``/``{1}`` are the operands and ``{beta}`` the
        broadcastable beta tensor (each substituted by a plain name); it may use only the names in ``SOURCE_SCOPE``.
        ``fn`` is compiled from it, and ``search.analysis.export`` writes it into standalone files, so there is one definition.
    form: printed form; ``{0}``/``{1}`` are the operands, already parenthesised to the precedences in ``operand_prec``.
    prec: precedence of the printed form.
    operand_prec: the minimum precedence each operand must have to be printed without parentheses.
    uses_beta: carries a trainable per-channel beta.
    fn: (derived) the function ``definition`` defines; takes ``arity`` tensors, plus ``beta`` when ``uses_beta``.
    """

    name: str
    arity: int
    math: str
    source: str
    form: str
    prec: int
    operand_prec: tuple[int, ...]
    uses_beta: bool = False
    fn: Callable[..., torch.Tensor] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        scope = dict(SOURCE_SCOPE)
        exec(compile(self.definition, f"<op {self.name}>", "exec"), scope)
        object.__setattr__(self, "fn", scope[self.fn_name])

    @property
    def fn_name(self) -> str:
        """Name of the function in ``definition`` (and in the kernels' generated code)."""
        return f"op_{self.name}"

    @property
    def definition(self) -> str:
        """Python source of ``fn``: ``def op_NAME(a[, b][, beta]): return SOURCE``."""
        params = ("a", "b")[: self.arity] + (("beta",) if self.uses_beta else ())
        body = self.source.format(*params[: self.arity], beta="beta")
        return f"def {self.fn_name}({', '.join(params)}):\n    return {body}\n"

    def __call__(self, *args: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
        if self.uses_beta:
            return self.fn(*args, beta)
        return self.fn(*args)


_U = lambda name, math_, source, form, prec, operand_prec, uses_beta=False: Op(  # noqa: E731
    name, 1, math_, source, form, prec, operand_prec, uses_beta)
_B = lambda name, math_, source, form, prec, operand_prec, uses_beta=False: Op(  # noqa: E731
    name, 2, math_, source, form, prec, operand_prec, uses_beta)

# The paper's 25 unary functions, in its order.
UNARY: tuple[Op, ...] = (
    _U("x", "x", "{0}", "{0}", ATOM, (SUM,)),
    _U("neg", "-x", "torch.neg({0})", "-{0}", PREFIX, (PREFIX,)),
    _U("abs", "|x|", "torch.abs({0})", "abs({0})", ATOM, (SUM,)),
    _U("square", "x^2", "torch.square({0})", "{0}**2", POWER, (ATOM,)),
    _U("cube", "x^3", "{0} * {0} * {0}", "{0}**3", POWER, (ATOM,)),
    _U("sqrt", "sqrt(x)", "torch.sqrt(torch.clamp({0}, min=EPS))", "sqrt({0})", ATOM, (SUM,)),
    _U("scale", "beta*x", "{beta} * {0}", "beta * {0}", PRODUCT, (PREFIX,), True),
    _U("shift", "x + beta", "{0} + {beta}", "{0} + beta", SUM, (SUM,), True),
    _U("log_abs", "log(|x| + eps)", "torch.log(torch.abs({0}) + EPS)", "log_abs({0})", ATOM, (SUM,)),
    _U("exp", "exp(x)", "torch.exp({0})", "exp({0})", ATOM, (SUM,)),
    _U("sin", "sin(x)", "torch.sin({0})", "sin({0})", ATOM, (SUM,)),
    _U("cos", "cos(x)", "torch.cos({0})", "cos({0})", ATOM, (SUM,)),
    _U("sinh", "sinh(x)", "torch.sinh({0})", "sinh({0})", ATOM, (SUM,)),
    _U("cosh", "cosh(x)", "torch.cosh({0})", "cosh({0})", ATOM, (SUM,)),
    _U("tanh", "tanh(x)", "torch.tanh({0})", "tanh({0})", ATOM, (SUM,)),
    _U("asinh", "asinh(x)", "torch.asinh({0})", "asinh({0})", ATOM, (SUM,)),
    _U("atan", "atan(x)", "torch.atan({0})", "atan({0})", ATOM, (SUM,)),
    # torch.sinc is the normalised sin(pi x) / (pi x); rescaling gives sin(x) / x with sinc(0) = 1
    _U("sinc", "sinc(x)", "torch.sinc({0} / math.pi)", "sinc({0})", ATOM, (SUM,)),
    _U("relu", "max(x, 0)", "torch.relu({0})", "relu({0})", ATOM, (SUM,)),
    _U("min0", "min(x, 0)", "torch.clamp({0}, max=0.0)", "min0({0})", ATOM, (SUM,)),
    _U("sigmoid", "sigmoid(x)", "torch.sigmoid({0})", "sigmoid({0})", ATOM, (SUM,)),
    _U("softplus", "log(1 + exp(x))", "torch.nn.functional.softplus({0})", "softplus({0})", ATOM, (SUM,)),
    _U("gauss", "exp(-x^2)", "torch.exp(-torch.square({0}))", "gauss({0})", ATOM, (SUM,)),
    _U("erf", "erf(x)", "torch.erf({0})", "erf({0})", ATOM, (SUM,)),
    # the constant unary ignores its input except for its shape
    _U("beta", "beta", "{beta}.expand_as({0})", "beta", ATOM, (SUM,), True),
)

# The paper's 10 binary functions, in its order.
BINARY: tuple[Op, ...] = (
    _B("add", "x1 + x2", "torch.add({0}, {1})", "{0} + {1}", SUM, (SUM, PRODUCT)),
    _B("mul", "x1 * x2", "torch.mul({0}, {1})", "{0} * {1}", PRODUCT, (PRODUCT, PREFIX)),
    _B("sub", "x1 - x2", "torch.sub({0}, {1})", "{0} - {1}", SUM, (SUM, PRODUCT)),
    _B("div", "x1 / (x2 + eps)", "{0} / ({1} + EPS)", "{0} / {1}", PRODUCT, (PRODUCT, PREFIX)),
    _B("max", "max(x1, x2)", "torch.maximum({0}, {1})", "max({0}, {1})", ATOM, (SUM, SUM)),
    _B("min", "min(x1, x2)", "torch.minimum({0}, {1})", "min({0}, {1})", ATOM, (SUM, SUM)),
    _B("sigmul", "sigmoid(x1) * x2", "torch.sigmoid({0}) * {1}", "sigmul({0}, {1})", ATOM, (SUM, SUM)),
    _B("gauss_diff", "exp(-beta (x1 - x2)^2)", "torch.exp(-{beta} * torch.square({0} - {1}))",
       "gauss_diff({0}, {1})", ATOM, (SUM, SUM), True),
    _B("laplace_diff", "exp(-beta |x1 - x2|)", "torch.exp(-{beta} * torch.abs({0} - {1}))",
       "laplace_diff({0}, {1})", ATOM, (SUM, SUM), True),
    _B("mix", "beta x1 + (1 - beta) x2", "{beta} * {0} + (1 - {beta}) * {1}",
       "mix({0}, {1})", ATOM, (SUM, SUM), True),
)

UNARY_BY_NAME: dict[str, Op] = {op.name: op for op in UNARY}
BINARY_BY_NAME: dict[str, Op] = {op.name: op for op in BINARY}
OPS_BY_NAME: dict[str, Op] = {**UNARY_BY_NAME, **BINARY_BY_NAME}

# Function-call spellings the parser accepts: every operator printed as ``name(...)``, plus the paper's own words.
CALLS: dict[str, Op] = {op.name: op for op in UNARY + BINARY if op.form.startswith(op.name + "(")}


def _operator_rows() -> list[tuple[str, str, str, str, str]]:
    """(kind, token, paper's math, text syntax, beta) per operator, in the table's order."""
    return [("unary" if op.arity == 1 else "binary", op.name, op.math,
             op.form.format("x1", "x2") if op.arity == 2 else op.form.format("x"), "yes" if op.uses_beta else "")
            for op in UNARY + BINARY]


OPERATOR_COLUMNS = ("kind", "token", "paper's math", "text syntax", "beta")


def operator_table_markdown() -> str:
    """The table as Markdown (README, docs/operators.md)."""
    cell = lambda text: "`" + text.replace("|", "\\|") + "`"  # noqa: E731  (a bare | would end the cell)
    rows = ["| " + " | ".join(OPERATOR_COLUMNS) + " |", "|---|---|---|---|---|"]
    for kind, name, math, form, beta in _operator_rows():
        rows.append(f"| {kind} | {cell(name)} | {cell(math)} | {cell(form)} | {beta} |")
    return "\n".join(rows)


def operator_table_text() -> str:
    """The table as aligned plain text (``actsearch space --list``)."""
    rows = [OPERATOR_COLUMNS, *_operator_rows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(OPERATOR_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


@dataclass(frozen=True)
class Display:
    """How displays write one operator (``search.language.simplify``: ``readable_text``, ``typeset_html``).

    typeset: the HTML form (``{0}``/``{1}`` the operands' HTML, parenthesised to ``operand_prec``): ``σ({0})``.
    operand_prec: the typeset operands' precedences; None: the printed form's (``Op.operand_prec``).
    text: the plain readable form where it is not the printed form (``sigmoid({0}) * {1}`` for ``sigmul``); it must
        parse back to the same function. text_prec, text_operand_prec: its precedence and its operands'.
    x_first: (text, typeset) forms used when the second operand is the bare input: ``x * sigmoid(beta * x)``;
        x_first_prec: the first operand's precedence in each.
    typeset_dot: the typeset form for an operand that is a named function (``β·softplus(x)``, not ``βsoftplus(x)``).
    """

    typeset: str
    operand_prec: tuple[int, ...] | None = None
    text: str = ""
    text_prec: int = ATOM
    text_operand_prec: tuple[int, ...] = ()
    x_first: tuple[str, str] = ()
    x_first_prec: tuple[int, int] = (PREFIX, POWER)
    typeset_dot: str = ""


_D = Display
# Every operator's display; the typeset forms follow the paper's notation (x·σ(βx)), in HTML that needs no script.
DISPLAY: dict[str, Display] = {
    "x": _D("{0}"),
    "neg": _D("\u2212{0}"),
    "abs": _D("|{0}|"),
    "square": _D("{0}<sup>2</sup>"),
    "cube": _D("{0}<sup>3</sup>"),
    "sqrt": _D("\u221a({0})"),
    "scale": _D("\u03b2{0}", (POWER,), typeset_dot="\u03b2\u00b7{0}"),
    "shift": _D("{0} + \u03b2"),
    "log_abs": _D("log(|{0}| + \u03b5)"),
    "exp": _D("exp({0})"),
    "sin": _D("sin({0})"),
    "cos": _D("cos({0})"),
    "sinh": _D("sinh({0})"),
    "cosh": _D("cosh({0})"),
    "tanh": _D("tanh({0})"),
    "asinh": _D("asinh({0})"),
    "atan": _D("atan({0})"),
    "sinc": _D("sinc({0})"),
    "relu": _D("max({0}, 0)"),
    "min0": _D("min({0}, 0)"),
    "sigmoid": _D("\u03c3({0})"),
    "softplus": _D("softplus({0})"),
    "gauss": _D("exp(\u2212{0}<sup>2</sup>)", (ATOM,)),
    "erf": _D("erf({0})"),
    "beta": _D("\u03b2"),
    "add": _D("{0} + {1}"),
    "mul": _D("{0}\u00b7{1}", (PRODUCT, POWER), x_first=("x * {0}", "x\u00b7{0}")),
    "sub": _D("{0} \u2212 {1}"),
    "div": _D("{0} / {1}", (PRODUCT, POWER)),
    "max": _D("max({0}, {1})"),
    "min": _D("min({0}, {1})"),
    "sigmul": _D("\u03c3({0})\u00b7{1}", (SUM, POWER), "sigmoid({0}) * {1}", PRODUCT, (SUM, PREFIX),
                 x_first=("x * sigmoid({0})", "x\u00b7\u03c3({0})"), x_first_prec=(SUM, SUM)),
    "gauss_diff": _D("exp(\u2212\u03b2({0} \u2212 {1})<sup>2</sup>)", (SUM, PRODUCT)),
    "laplace_diff": _D("exp(\u2212\u03b2|{0} \u2212 {1}|)", (SUM, PRODUCT)),
    "mix": _D("mix<sub>\u03b2</sub>({0}, {1})"),
}
assert set(DISPLAY) == set(OPS_BY_NAME), "every operator needs its display"


# The native kernel's C++ for each operator (search/language/native.py builds one kernel from these, once per machine):
# (forward, backward). forward is an expression for the value ``v`` of the operands ``a``, ``b`` and the beta ``p``;
# backward sets ``ga``, ``gb``, ``gp`` from the incoming gradient ``g`` (and a, b, p, v); a beta torch reaches by two
# paths (mix) gets its second in ``gq``, summed apart as torch sums each path. Both follow the torch
# source above step by step, with the backward formulas of torch's autograd (derivatives.yaml), so values, gradients
# and where they stop being finite agree with the eager path (tests/test_native.py). ``T`` is the scalar type,
# ``E`` is EPS, ``sgn``/``sigm`` are torch.sgn / torch.sigmoid, ``vm::`` the kernel's vector math (glibc's),
# ``pick(c, x, y)`` is ``c ? x : y`` with both computed (a call under a condition leaves the loop scalar).
NATIVE: dict[str, tuple[str, str]] = {
    "neg": ("-a", "ga = -g;"),
    "abs": ("std::abs(a)", "ga = g * sgn(a);"),
    "square": ("a * a", "ga = g * (T(2) * a);"),
    "cube": ("a * a * a", "T ga1 = g * a; ga = g * (a * a) + ga1 * a + ga1 * a;"),
    "sqrt": ("std::sqrt(clamp_min(a, E))", "ga = a > E ? g / (T(2) * v) : T(0);"),
    "scale": ("p * a", "ga = g * p; gp = g * a;"),
    "shift": ("a + p", "ga = g; gp = g;"),
    "log_abs": ("vm::log(std::abs(a) + E)", "ga = g / (std::abs(a) + E) * sgn(a);"),
    "exp": ("vm::exp(a)", "ga = g * v;"),
    "sin": ("vm::sin(a)", "ga = g * vm::cos(a);"),
    "cos": ("vm::cos(a)", "ga = g * -vm::sin(a);"),
    "sinh": ("vm::sinh(a)", "ga = g * vm::cosh(a);"),
    "cosh": ("vm::cosh(a)", "ga = g * vm::sinh(a);"),
    "tanh": ("vm::tanh(a)", "ga = g * (T(1) - v * v);"),
    "asinh": ("vm::asinh(a)", "ga = g * (T(1) / std::sqrt(a * a + T(1)));"),
    "atan": ("vm::atan(a)", "ga = g / (a * a + T(1));"),
    "sinc": ("sinc_pi(a / T(PI))",
             "T t = a / T(PI), tp = t * T(PI), tsp = t * t * T(PI), q = tp * tp;"
             # near 0 torch's d = tp cos tp - sin tp cancels: libmvec's cos and sin (a few ulp) lose 1% of it at
             # 0.004, so there the series, but 0 where d is 0 as in torch (it is, below 1e-4); tp + 0 keeps GCC from
             # fusing sin and cos into one scalar sincos call
             " T d = tp * vm::cos(tp + T(0)) - vm::sin(tp), s = std::abs(tp) < T(0.5) && d != T(0)"
             " ? tp * (T(-1.0 / 3) + q * (T(1.0 / 30) + q * (T(-1.0 / 840) + q * T(1.0 / 45360)))) * T(PI) : d / tsp;"
             " ga = (tsp == T(0) ? T(0) : g * s) / T(PI);"),
    "relu": ("std::isnan(a) ? a : (a > T(0) ? a : T(0))", "ga = v <= T(0) ? T(0) : g;"),
    "min0": ("std::isnan(a) ? a : (a < T(0) ? a : T(0))", "ga = a < T(0) ? g : T(0);"),
    "sigmoid": ("sigm(a)", "ga = g * (T(1) - v) * v;"),
    "softplus": ("pick(a > T(20), a, vm::log1p(vm::exp(a)))",
                 "T z = vm::exp(a); ga = a > T(20) ? g : g * z / (z + T(1));"),
    "gauss": ("vm::exp(-(a * a))", "ga = -(g * v) * (T(2) * a);"),
    "erf": ("vm::erf(a)", "ga = T(2.0 / std::sqrt(PI)) * vm::exp(-(a * a)) * g;"),
    "beta": ("p", "gp = g;"),
    "add": ("a + b", "ga = g; gb = g;"),
    "mul": ("a * b", "ga = g * b; gb = g * a;"),
    "sub": ("a - b", "ga = g; gb = -g;"),
    "div": ("a / (b + E)", "T d = b + E; ga = g / d; gb = -g * ((a / d) / d);"),
    "max": ("(std::isnan(a) || std::isnan(b)) ? a + b : (a > b ? a : b)",
            "T h = a == b ? g / T(2) : g; ga = a < b ? T(0) : h; gb = a > b ? T(0) : h;"),
    "min": ("(std::isnan(a) || std::isnan(b)) ? a + b : (a < b ? a : b)",
            "T h = a == b ? g / T(2) : g; ga = a > b ? T(0) : h; gb = a < b ? T(0) : h;"),
    "sigmul": ("sigm(a) * b", "T s = sigm(a); ga = (g * b) * (T(1) - s) * s; gb = g * s;"),
    "gauss_diff": ("vm::exp(-p * ((a - b) * (a - b)))",
                   "T d = a - b, s = d * d, gm = g * v; gp = -(gm * s); T gd = (gm * -p) * (T(2) * d);"
                   " ga = gd; gb = -gd;"),
    "laplace_diff": ("vm::exp(-p * std::abs(a - b))",
                     "T d = a - b, gm = g * v; gp = -(gm * std::abs(d)); T gd = (gm * -p) * sgn(d);"
                     " ga = gd; gb = -gd;"),
    "mix": ("p * a + (T(1) - p) * b", "ga = g * p; gb = g * (T(1) - p); gp = g * a; gq = -(g * b);"),
}
assert set(NATIVE) == set(OPS_BY_NAME) - {"x"}, "every operator but the identity needs its native code"

# The same in Triton (search/language/cuda.py's kernels, on CUDA): (forward, backward) in Python syntax, statements
# separated by ";", with tl (triton.language), E (EPS), PI, the functions exp, log, log1p, sin, cos, sinh, cosh, tanh,
# asinh, atan, erf, sqrt (libdevice's on a GPU), and sgn, sigm, sinc_pi as above. Every backward formula is NATIVE's.
TRITON: dict[str, tuple[str, str]] = {
    "neg": ("-a", "ga = -g"),
    "abs": ("tl.abs(a)", "ga = g * sgn(a)"),
    "square": ("a * a", "ga = g * (2.0 * a)"),
    "cube": ("a * a * a", "ga1 = g * a; ga = g * (a * a) + ga1 * a + ga1 * a"),
    "sqrt": ("sqrt(tl.where(a < E, E, a))", "ga = tl.where(a > E, g / (2.0 * v), 0.0)"),
    "scale": ("p * a", "ga = g * p; gp = g * a"),
    "shift": ("a + p", "ga = g; gp = g"),
    "log_abs": ("log(tl.abs(a) + E)", "ga = g / (tl.abs(a) + E) * sgn(a)"),
    "exp": ("exp(a)", "ga = g * v"),
    "sin": ("sin(a)", "ga = g * cos(a)"),
    "cos": ("cos(a)", "ga = g * -sin(a)"),
    "sinh": ("sinh(a)", "ga = g * cosh(a)"),
    "cosh": ("cosh(a)", "ga = g * sinh(a)"),
    "tanh": ("tanh(a)", "ga = g * (1.0 - v * v)"),
    "asinh": ("asinh(a)", "ga = g * (1.0 / sqrt(a * a + 1.0))"),
    "atan": ("atan(a)", "ga = g / (a * a + 1.0)"),
    "sinc": ("sinc_pi(a / PI)",
             "t = a / PI; tp = t * PI; tsp = t * t * PI; q = tp * tp; d = tp * cos(tp) - sin(tp);"
             " s = tl.where((tl.abs(tp) < 0.5) & (d != 0.0),"
             " tp * (-1.0 / 3 + q * (1.0 / 30 + q * (-1.0 / 840 + q * (1.0 / 45360)))) * PI, d / tsp);"
             " ga = tl.where(tsp == 0.0, 0.0, g * s) / PI"),
    "relu": ("tl.where(a != a, a, tl.where(a > 0.0, a, 0.0))", "ga = tl.where(v <= 0.0, 0.0, g)"),
    "min0": ("tl.where(a != a, a, tl.where(a < 0.0, a, 0.0))", "ga = tl.where(a < 0.0, g, 0.0)"),
    "sigmoid": ("sigm(a)", "ga = g * (1.0 - v) * v"),
    "softplus": ("tl.where(a > 20.0, a, log1p(exp(a)))", "z = exp(a); ga = tl.where(a > 20.0, g, g * z / (z + 1.0))"),
    "gauss": ("exp(-(a * a))", "ga = -(g * v) * (2.0 * a)"),
    "erf": ("erf(a)", "ga = 1.1283791670955126 * exp(-(a * a)) * g"),
    "beta": ("p", "gp = g"),
    "add": ("a + b", "ga = g; gb = g"),
    "mul": ("a * b", "ga = g * b; gb = g * a"),
    "sub": ("a - b", "ga = g; gb = -g"),
    "div": ("a / (b + E)", "d = b + E; ga = g / d; gb = -g * ((a / d) / d)"),
    "max": ("tl.where((a != a) | (b != b), a + b, tl.where(a > b, a, b))",
            "h = tl.where(a == b, g / 2.0, g); ga = tl.where(a < b, 0.0, h); gb = tl.where(a > b, 0.0, h)"),
    "min": ("tl.where((a != a) | (b != b), a + b, tl.where(a < b, a, b))",
            "h = tl.where(a == b, g / 2.0, g); ga = tl.where(a > b, 0.0, h); gb = tl.where(a < b, 0.0, h)"),
    "sigmul": ("sigm(a) * b", "s = sigm(a); ga = (g * b) * (1.0 - s) * s; gb = g * s"),
    "gauss_diff": ("exp(-p * ((a - b) * (a - b)))",
                   "d = a - b; s = d * d; gm = g * v; gp = -(gm * s); gd = (gm * -p) * (2.0 * d); ga = gd; gb = -gd"),
    "laplace_diff": ("exp(-p * tl.abs(a - b))",
                     "d = a - b; gm = g * v; gp = -(gm * tl.abs(d)); gd = (gm * -p) * sgn(d); ga = gd; gb = -gd"),
    "mix": ("p * a + (1.0 - p) * b", "ga = g * p; gb = g * (1.0 - p); gp = g * a; gq = -(g * b)"),
}
assert set(TRITON) == set(NATIVE), "every operator with native code needs its Triton code"
