"""The native kernel computes the eager path's function: values, input gradients and the betas' per-channel gradients
agree to float32 tolerance, and are non-finite at the same points, over the whole one-unit space and a random sample
of 1,000 two-unit functions, at random points (including points where exp, sinh, cube, ... overflow)."""
import random
import warnings

import pytest
import torch

from search import Expression
from search.language import cuda
from search.language import kernel as kernel_module
from search.language import native
from search.language.index import FunctionIndex
from search.language.expression import X, apply
from search.language.ops import BINARY, UNARY
from search.language.space import Space

pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernel cannot be built here (no compiler)")

CHANNELS, ROWS = 3, 2
RTOL = 2e-3  # float32, after libm / SLEEF differences of a few ulp are amplified by the function's own conditioning


def _points(seed: int) -> torch.Tensor:
    """(ROWS, CHANNELS, 48) points: ordinary ones, exact zeros and EPS, and large ones that overflow exp, cube, ..."""
    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn(ROWS, CHANNELS, 24, generator=g) * 3, torch.rand(ROWS, CHANNELS, 12, generator=g) * 200 - 100,
             torch.tensor([0.0, -0.0, 1e-5, -1e-5, 20.0, 88.7, -88.7, 1e13, -1e13, 3e38, -3e38, 1.0])
             .expand(ROWS, CHANNELS, 12)]
    return torch.cat(parts, dim=2).contiguous()


def _betas(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(max(n, 1), CHANNELS, generator=g) * 5 - 2.5


def _run(expr: Expression, kind, x: torch.Tensor, beta: torch.Tensor, dy: torch.Tensor):
    """y, dx and dbeta of ``expr`` by the kernel ``kind`` (a kernel_module kind, or ``kind(expr, x, beta) -> y``)."""
    x = x.clone().requires_grad_()
    beta = beta.clone().requires_grad_(expr.n_betas > 0)
    y = kind(expr, x, beta) if callable(kind) else kernel_module.kernel(expr, kind)(x, beta)
    y.backward(dy)
    none = lambda t: torch.zeros_like(t) if t.grad is None else t.grad  # noqa: E731  (a function that ignores x)
    return [y.detach(), none(x), none(beta) if expr.n_betas else torch.zeros(())]


def _mismatch(expected: torch.Tensor, got: torch.Tensor, exact: torch.Tensor, noise: torch.Tensor) -> str | None:
    """Why ``got`` is not ``expected`` (the eager float32 result; ``exact``: eager in float64): a different set of
    non-finite points or values, or a finite value off by more than RTOL from ``expected`` and also farther from
    ``exact`` than the eager float32 result itself (cancellations: ``cosh(x) - sinh(x)`` at x = 9 is float32 noise),
    beyond an absolute 1e-6 of the largest finite value and ``noise``: how far float64 moves when x and the betas move
    by float32's rounding (sin(x**3) at x = 40 has no float32 answer)."""
    finite = torch.isfinite(expected)
    if not torch.equal(finite, torch.isfinite(got)):
        return f"non-finite at different points: {(finite != torch.isfinite(got)).sum().item()}"
    if not torch.equal(expected[~finite].isnan(), got[~finite].isnan()) or \
            not torch.equal(expected[expected.isinf()], got[expected.isinf()]):
        return "different non-finite values"
    e, g, t = expected[finite].double(), got[finite].double(), exact[finite]
    atol = 1e-6 * (1 + e.abs().max()) if finite.any() else 0  # float32 noise of the function's own scale here
    atol = atol + 4 * noise[finite].nan_to_num(posinf=float("inf"))
    bad = ((e - g).abs() > RTOL * e.abs() + atol) & ((t - g).abs() > RTOL * t.abs() + atol + 2 * (t - e).abs())
    return f"{bad.sum().item()} finite values differ, worst {e[bad][:3].tolist()} vs {g[bad][:3].tolist()}" \
        if bad.any() else None


def _check(text: str, seed: int, x: torch.Tensor | None = None, kind="native") -> str | None:
    """Why the kernel ``kind`` (``_run``'s) is not eager's for ``text``, at ``_points(seed)`` or ``x``; None where it
    is."""
    expr = Expression.parse(text)
    x, beta = _points(seed) if x is None else x, _betas(expr.n_betas, seed + 1)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 2))
    eager, fast = _run(expr, "eager", x, beta, dy), _run(expr, kind, x, beta, dy)
    exact = _run(expr, "eager", x.double(), beta.double(), dy.double())
    moved = [_run(expr, "eager", x.double() * f, beta.double() * f, dy.double()) for f in (1 + 2 ** -24, 1 - 2 ** -24)]
    for k, (name, e, n, t) in enumerate(zip(("value", "dx", "dbeta"), eager, fast, exact)):
        noise = torch.maximum((moved[0][k] - t).abs(), (moved[1][k] - t).abs())
        why = _mismatch(e, n, t, noise)
        if why:
            return f"{text}: {name}: {why}"
    return None


def test_programs_number_betas_as_the_eager_code_does():
    expr = Expression.parse("mix(x + beta, beta * x) * x")
    code = native.program(expr.root).tolist()
    assert [row[3] for row in code] == [0, 1, 2, -1]  # shift, scale, mix (children first), mul
    assert code[-1][1] == 2 and code[-1][2] == -1  # the root multiplies mix's value by x
    assert native.program(Expression.parse("x").root).shape == (0, 4)


def test_native_matches_eager_on_the_whole_one_unit_space():
    space = Space(1)
    texts = sorted({space.decode(tokens).text for tokens in FunctionIndex.of(space).distinct().values()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = [why for i, text in enumerate(texts) if (why := _check(text, i))]
    assert len(texts) > 3000 and not bad, f"{len(bad)} of {len(texts)}: " + "\n".join(bad[:10])


def test_native_matches_eager_on_a_random_sample_of_two_unit_functions():
    space, rng = Space(2), random.Random(22)
    texts = sorted({space.decode(tuple(rng.choice(c) for c in space.choices)).text for _ in range(1000)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = [why for i, text in enumerate(texts) if (why := _check(text, 10_000 + i))]
    # Deeper compositions reach points float32 cannot answer beyond the input noise measured above (cos of an
    # intermediate near 1e21 that rounds differently in glibc's and SLEEF's exp, sinh); at most 1% of the functions,
    # at one or two of their 288 points (22 seed: 7 of 995 with the kernel built for AVX-512, 8 for AVX2, two of them by
    # a value overflowing in one and not the other).
    assert len(texts) > 900 and len(bad) <= len(texts) // 100, f"{len(bad)} of {len(texts)}: " + "\n".join(bad)


def test_every_operator_matches_eager_where_glibcs_vector_math_leaves_its_fast_path():
    """NaN, inf, huge and tiny values and the edges of the kernel's guarded ranges (exp beyond 80 and below -87, sinh
    and cosh beyond 80, atan from 1e6 to 1e8 and beyond, sin and cos reduced in double from 1e4 to 8e8, ...): each
    operator alone gives eager's values and gradients there, non-finite at the same points."""
    edges = [float("nan"), float("inf"), 0.0, 1e-38, 1e-30, 1e-10, 1e-4, 0.5, 9.5, 10.5, 80.5, 86.0, 87.5, 88.7, 89.5,
             95.0, 104.5, 105.5, 1e3, 9.9e3, 1.01e4, 1.5e4, 1e5, 2e6, 5e7, 2e8, 7.9e8, 8.1e8, 1e20, 3e38]
    row = torch.tensor(edges + [-e for e in edges])
    x = row.expand(ROWS, CHANNELS, row.numel()).contiguous()
    ops = [op for op in UNARY + BINARY if op.name != "x"]
    texts = [Expression(apply(op, *[X] * op.arity)).text for op in ops]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = [why for i, text in enumerate(texts) if (why := _check(text, 20_000 + i, x))]
    assert not bad, "\n".join(bad)


def test_values_saved_by_the_forward_give_the_gradients_computed_again_bit_for_bit():
    """Training saves the costly values the backward reads (an exp, a sigmoid, ...) instead of computing them again:
    the gradients are the same bits either way, for two-unit functions that save one, two or more values, and y is
    the same bits with and without saving (under no_grad, where nothing is saved, too)."""
    ext, space, rng = native.extension(), Space(2), random.Random(5)
    bits = lambda t: t.contiguous().view(torch.int32)  # noqa: E731  (nan and inf compared as bits)
    texts = sorted({space.decode(tuple(rng.choice(c) for c in space.choices)).text for _ in range(300)})
    x, dy = _points(1), torch.randn(ROWS, CHANNELS, 48, generator=torch.Generator().manual_seed(2))
    kept_counts = set()
    for text in texts:
        expr = Expression.parse(text)
        code, beta, grad = native.program(expr.root), _betas(expr.n_betas, 3), expr.n_betas > 0
        y, kept, back = ext.forward_saving(x, beta, code, CHANNELS, 48, True)
        kept_counts.add(0 if kept is None else kept.shape[0])
        again = ext.backward(x, beta, code, dy, CHANNELS, 48, grad)
        if kept is not None:
            saved = ext.backward_saved(x, beta, code, dy, CHANNELS, 48, grad, kept, back)
            for a, b in zip(again[:1 + grad], saved[:1 + grad]):
                assert torch.equal(bits(a), bits(b)), text
        assert torch.equal(bits(y), bits(ext.forward(x, beta, code, CHANNELS, 48))), text
        with torch.no_grad():
            assert torch.equal(bits(kernel_module.kernel(expr, "native")(x, beta)), bits(y)), text
    assert {0, 1, 2} <= kept_counts and max(kept_counts) >= 3


def test_the_roots_value_read_back_is_y_itself_kept_as_autograd_keeps_an_output():
    """gauss_diff's backward reads its own value: at the root that value is y, so the forward saves no copy of it (one
    tensor less kept per site until the backward), and an in-place change of y before the backward is autograd's
    error, as it is for the eager path's exp, not gradients of changed values."""
    ext = native.extension()
    x = torch.randn(ROWS, CHANNELS, 48, generator=torch.Generator().manual_seed(3))
    for text, rows, reads_y in [("gauss_diff(x, min0(x))", 0, True), ("gauss_diff(tanh(x), x)", 1, True),
                                ("tanh(x) * beta", 1, False)]:
        expr = Expression.parse(text)
        y, kept, back = ext.forward_saving(x, _betas(expr.n_betas, 3), native.program(expr.root), CHANNELS, 48, True)
        assert kept is not None and kept.shape[0] == rows, text
        assert (back is not None) == reads_y and (back is None or back.data_ptr() == y.data_ptr()), text
    expr = Expression.parse("gauss_diff(x, min0(x))")
    for kind in ("native", "eager"):
        act = kernel_module.activation_module(expr, channels=CHANNELS, kernel=kind)
        y = act(x.clone().requires_grad_())
        y.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()


def test_a_value_with_two_uses_gets_one_backward_and_eagers_gradients():
    """A two-unit function often uses the first unit twice (``min(softplus(u), tanh(u))``): the kernel computes u's
    value once and runs u's backward once, on the sum of both uses' gradients, as autograd does on a graph; where that
    sum's dx is not finite, eager's own non-finite values (each use's backward apart: inf - inf is NaN; cosh(100) is
    inf here)."""
    x = torch.randn(ROWS, CHANNELS, 48, generator=torch.Generator().manual_seed(7)) * 3
    x[0, 0, :4] = torch.tensor([100.0, -100.0, 0.0, 1e-3])
    texts = ["min(softplus(sigmoid(x) + sinc(x)), tanh(sigmoid(x) + sinc(x)))",
             "(sinh(x) - cos(x)) * sinc(sinh(x) - cos(x))", "abs(beta * cosh(x)) + tanh(beta * cosh(x))"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = [why for i, text in enumerate(texts) if (why := _check(text, 30_000 + i, x))]
    assert not bad, "\n".join(bad)


def test_the_betas_gradients_are_the_same_bits_whichever_thread_finishes_first():
    """With several threads (``child.threads``) each sums the betas' gradients over its own range of tiles, and the
    ranges' sums are added in the order of their tiles, not in the order the threads finish: a child's betas move the
    same way on every run. Four ranges whose betas' gradients sum to 1e20, 1, -1e20 and 1 add up to 1 in that order
    and to 0 in the order 1, -1e20, 1, 1e20; one range made slow (cos of 1e9, glibc's scalar path, where dy is 0)
    finishes last."""
    expr = Expression.parse("sin(x) + beta * x")
    quarter = 64 * 256  # four threads: a range of 64 tiles each (native.cpp's grain)

    def beta_grad(slow: int) -> float:
        x, dy = torch.ones(4, 1, quarter), torch.zeros(4, 1, quarter)
        for r, total in enumerate([1e20, 1.0, -1e20, 1.0]):
            dy[r, 0, :256] = total / 256  # the range's sum, from its first tile
        x[slow, 0, 256:] = 1e9
        return _run(expr, "native", x, torch.ones(1, 1), dy)[2].item()

    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        sums = {beta_grad(slow) for slow in (0, 3, 0, 3)}
    finally:
        torch.set_num_threads(threads)
    assert sums == {1.0}, sums


def test_a_diverging_candidate_still_diverges_and_betas_get_per_channel_gradients():
    expr = Expression.parse("exp(cosh(x)) * (x + beta)")
    x = torch.tensor([[[0.5, 30.0]], [[-1.0, 2.0]]]).repeat(1, 2, 1)  # (2, 2, 2): exp(cosh(30)) overflows
    beta = torch.tensor([[1.0, -2.0]], requires_grad=True)
    y = kernel_module.kernel(expr, "native")(x, beta)
    assert torch.isinf(y[0, :, 1]).all() and torch.isfinite(y[1]).all()
    y[1].sum().backward()  # the overflowing row's zero gradient times its infinite derivative: nan, as in eager
    ref = beta.detach().clone().requires_grad_()
    kernel_module.kernel(expr, "eager")(x, ref)[1].sum().backward()
    assert beta.grad.isnan().all() and ref.grad.isnan().all()
    beta.grad = ref.grad = None
    kernel_module.kernel(expr, "native")(x[1:], beta).sum().backward()  # without the overflow: one per channel
    kernel_module.kernel(expr, "eager")(x[1:], ref).sum().backward()
    assert beta.grad.shape == (1, 2) and torch.isfinite(beta.grad).all()
    assert torch.allclose(beta.grad, ref.grad, rtol=1e-5)


def test_native_is_chosen_by_name_and_recorded():
    from evaluator.activations import activation_kernel
    from search.language.kernel import activation_module, resolve_kernel

    assert resolve_kernel(None, "cpu") == "native" and resolve_kernel("auto", "cpu", False) == "native"  # the CPU default
    assert resolve_kernel(None, "cpu", True) == "compiled" and resolve_kernel("eager", "cpu") == "eager"
    assert resolve_kernel("native", "cuda") == ("native" if cuda.available() else "eager")  # Triton, or eager
    assert resolve_kernel(None, "cuda") == "compiled" and resolve_kernel(None, "cuda", False) == "eager"
    assert activation_kernel("relu", "cpu") == "torch"
    assert activation_kernel("sin(x) * x", "cpu", None, "native") == "native"
    module = activation_module(Expression.parse("x * sigmoid(beta * x)"), channels=4, kernel="native")
    x = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    module.double()
    assert torch.autograd.gradcheck(lambda t: module(t), (x,))  # float64 through the same kernel


def test_a_beta_that_does_not_fit_the_input_is_named_and_a_function_without_betas_needs_none():
    x = torch.randn(4, 6, 5)
    code = native.program(Expression.parse("x * sigmoid(beta * x)").root)
    with pytest.raises(ValueError, match=r"beta of shape \[1, 4\] for an input of 6 channels"):
        native.run(code, x, torch.ones(1, 4))
    with pytest.raises(RuntimeError, match="reads 1 betas of 0"):
        native.run(code, x, None)
    code = native.program(Expression.parse("x * sigmoid(x)").root)
    assert torch.equal(native.run(code, x, None), native.run(code, x, torch.ones(1, 1)))


@pytest.mark.parametrize("shape, columns", [((300, 70), 70), ((300, 70), 1), ((7, 5, 3), 5), ((2, 3, 200), 3)])
def test_betas_get_their_gradients_whatever_the_layout(shape, columns):
    """A linear layer's (batch, features) input puts each element in its own channel, and a row of 70 features
    crosses the kernel's 256-element tiles; one beta may also serve every channel."""
    expr = Expression.parse("mix(x + beta, sin(x)) * sigmoid(beta * x)")
    g = torch.Generator().manual_seed(5)
    x, dy = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    beta = torch.rand(expr.n_betas, columns, generator=g) * 2
    eager, fast = _run(expr, "eager", x, beta, dy), _run(expr, "native", x, beta, dy)
    for name, e, n in zip(("value", "dx", "dbeta"), eager, fast):
        assert torch.allclose(e, n, rtol=1e-4, atol=1e-5), name
    assert fast[2].shape == (expr.n_betas, columns) and fast[2].abs().min() > 0


def test_a_search_on_this_machine_builds_the_kernel_before_its_children(monkeypatch):
    """The driver builds (or loads) the kernel before an embedded Ray's children start, and says so when the build
    took long; the synthetic task (no network) and a cluster's children (other machines) leave it to the workers."""
    import io
    from types import SimpleNamespace

    import evaluator.train
    from search.loop import session
    from search.loop.config import config_from_dict
    from search.loop.progress import Progress
    from search.loop.store import Store

    built = []
    monkeypatch.setattr(evaluator.train, "prepare_kernel", lambda settings, text: built.append((settings.task, text)))
    clock = iter([0.0, 40.0, 40.0])  # the build takes 40 s
    monkeypatch.setattr(session, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    out = io.StringIO()
    store = Store.in_memory()
    session._prepare_kernel(config_from_dict({"child": {"task": "mnist1d"}}), Progress(out, io.StringIO(), 30.0), store)
    assert built == [("mnist1d", "x * sigmoid(beta * x)")] and "native activation kernel built in 40 s" in out.getvalue()
    for child, resources in (({"task": "synthetic"}, {}), ({"task": "mnist1d"}, {"address": "10.0.0.1:6379"})):
        session._prepare_kernel(config_from_dict({"child": child, "resources": resources}),
                                Progress(io.StringIO(), io.StringIO(), 30.0), store)
    assert len(built) == 1


@pytest.mark.parametrize("text", ["x * sigmoid(beta * x)", "sin(x) * relu(x)", "gauss_diff(cosh(x), x ** 2)"])
def test_a_gradient_of_a_gradient_is_the_eager_one(text):
    """A child with a gradient penalty differentiates the activation twice. The native kernel's backward is not
    differentiable itself (it would treat f'(x) as a constant); there the eager code computes the gradient as a graph,
    so every second-order gradient is eager's, and a first-order gradient still comes from the kernel."""
    expr = Expression.parse(text)
    g = torch.Generator().manual_seed(3)
    x0, w0 = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)

    def penalty(kind: str):
        torch.manual_seed(0)
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        act = kernel_module.activation_module(expr, channels=2, kernel=kind)
        if act.beta is not None:
            with torch.no_grad():
                act.beta.copy_(torch.tensor([[0.7, 1.3]]).expand_as(act.beta))
        (gx,) = torch.autograd.grad(act(x * w).sum(), x, create_graph=True)
        (gx ** 2).sum().backward()
        return gx.detach(), w.grad, x.grad, None if act.beta is None else act.beta.grad

    eager, fast = penalty("eager"), penalty("native")
    for e, f in zip(eager, fast):
        if e is not None:
            assert torch.isfinite(e).all() and e.abs().sum() > 0
            assert torch.allclose(f, e, rtol=1e-4, atol=1e-5)
    y = kernel_module.activation_module(expr, channels=2, kernel="native")(x0.clone().requires_grad_())
    assert "NativeFunction" in y.grad_fn.name()  # the kernel ran the forward, not eager


@pytest.mark.parametrize("text", ["x * sigmoid(beta * x)", "sin(x) + cos(x)"])
def test_a_compiled_child_keeps_the_kernel_in_one_graph(text):
    """``compile: on`` with ``kernel: native``: torch.compile traces the kernel as a custom operator, so the whole
    child is one graph (``fullgraph=True`` fails at a graph break, where a traced pybind call would cut it at each
    activation with a page-long warning), with the uncompiled child's values and gradients, betas' included."""
    torch.manual_seed(0)
    act = kernel_module.activation_module(Expression.parse(text), channels=8, kernel="native")
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 3), act, torch.nn.Conv1d(8, 4, 3))
    x = torch.randn(4, 1, 20)

    def step(net):
        model.zero_grad()
        y = net(x)
        y.square().sum().backward()
        return [y.detach()] + [p.grad.clone() for p in model.parameters()]

    plain = step(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Dynamo's "does not know how to trace the builtin" warning
        compiled = step(torch.compile(model, fullgraph=True, backend="aot_eager"))
    torch._dynamo.reset()
    assert len(compiled) == len(plain) == 6 - (act.beta is None)
    for a, b in zip(plain, compiled):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("text", ["sigmoid(beta)", "beta * beta - beta"])
def test_a_function_of_the_betas_alone_gives_x_no_gradient_as_eager_does(text):
    """Native gave x a gradient of zeros where eager gives None: an optimiser's weight decay then moved the weights
    before the activation in one kernel and not in the other."""
    grads = {}
    for kernel in ("eager", "native"):
        module = kernel_module.activation_module(Expression.parse(text), channels=3, kernel=kernel)
        x = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
        module(x).sum().backward()
        grads[kernel] = (x.grad, module.beta.grad)
    assert grads["eager"][0] is None and grads["native"][0] is None
    torch.testing.assert_close(grads["native"][1], grads["eager"][1])
