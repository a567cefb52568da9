"""The native kernel's Triton kind (CUDA). Without a GPU its kernels run under Triton's interpreter on CPU tensors
(the program walk, the backward's formulas and sums, the betas' per-channel gradients: the same code a GPU compiles,
with torch's CPU functions for libdevice's), and they compile for two GPU generations (Triton's ahead-of-time
compiler and ptxas, no driver needed); on a machine with a GPU the same checks run the compiled kernels there
(``benchmarks/gpu.sh`` runs this file first)."""
from __future__ import annotations

import random
import warnings

import pytest
import torch

from search.language import cuda, native
from search.language import kernel as kernel_module
from search.language.expression import Expression
from search.language.space import Space
from test_native import _check as native_check
from test_native import _run

pytestmark = pytest.mark.skipif(not cuda.available(), reason="Triton is not installed")


def _interpreted(code: torch.Tensor, x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """A program's y by the Triton kernels under Triton's interpreter, on the CPU."""
    return cuda.run(code, x, beta, kernel_module.eager_backward, interpret=True)


def _on_gpu(code: torch.Tensor, x: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """A program's y by the compiled Triton kernels on this machine's GPU (x and beta copied there and y back, so the
    gradients reach the CPU tensors)."""
    return cuda.run(code, x.cuda(), beta.cuda(), kernel_module.eager_backward).cpu()


def _interpreter_runs() -> bool:
    """Whether this Triton's interpreter runs the kernels: Triton 3.6's, with numpy 2 (what torch 2.11 brings), cannot
    take a loop's bound from an argument (it converts a one-element array with int()); its compiler can (below)."""
    try:
        _interpreted(native.program(Expression.parse("sin(x)").root), torch.ones(2, 3), torch.ones(1, 1))
    except Exception as exc:  # triton.runtime.errors.InterpreterError
        return "0-dimensional" not in str(exc)
    return True


# Each check runs both ways: interpreted on the CPU (here, and in CI), and compiled on a GPU where there is one
# (benchmarks/gpu.sh runs this file first).
KINDS = [pytest.param(_interpreted, id="interpreter", marks=pytest.mark.skipif(
             not cuda.available() or not _interpreter_runs(),
             reason="this Triton's interpreter cannot run the kernels (Triton 3.6 with numpy 2)")),
         pytest.param(_on_gpu, id="gpu", marks=pytest.mark.skipif(
             not cuda.available() or not torch.cuda.is_available(), reason="no CUDA GPU here"))]
on_both = pytest.mark.parametrize("run", KINDS)


def _kind(run):
    """``run`` as a kind for test_native's ``_run`` and ``_check``: ``(expr, x, beta) -> y``."""
    return lambda expr, x, beta: run(native.program(expr.root), x, beta)


def _check(text: str, seed: int, run, x: torch.Tensor | None = None) -> str | None:
    """test_native's check (the same points, betas and tolerance), the Triton kernels (``run``) against eager."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's overflow warnings inside the interpreter
        return native_check(text, seed, x, kind=_kind(run))


@on_both
def test_every_operator_alone_and_with_a_beta_matches_eager(run):
    texts = [f"{op}(x)" for op in ("abs", "sqrt", "log_abs", "exp", "sin", "cos", "sinh", "cosh", "tanh", "asinh",
                                   "atan", "sinc", "relu", "min0", "sigmoid", "softplus", "gauss", "erf")]
    texts += ["-x", "x**2", "x**3", "beta * x", "x + beta", "max(x, beta)"]
    texts += [f"{op}(x, sin(x))" for op in ("max", "min", "sigmul", "gauss_diff", "laplace_diff", "mix")]
    texts += ["x / sin(x)", "x * sin(x)", "x - sin(x)", "x + sin(x)", "x"]
    ordinary = torch.randn(2, 3, 48, generator=torch.Generator().manual_seed(8)) * 3  # where no sum is inf
    bad = [why for i, text in enumerate(texts) for x in (None, ordinary) if (why := _check(text, i, run, x))]
    assert not bad, "\n".join(bad)


@on_both
def test_a_sample_of_one_unit_and_two_unit_functions_matches_eager(run):
    """200 one-unit and 200 two-unit functions (the CPU kernel's tests take the whole one-unit space and 995 two-unit
    ones; the interpreter is slower), at test_native's points, extreme ones included: values and gradients agree,
    non-finite where eager's are, but at most 1% of the two-unit ones (as the CPU kernel's: sums in another order)."""
    for units, seed in ((1, 31), (2, 32)):
        space, rng = Space(units), random.Random(seed)
        texts = sorted({space.decode(tuple(rng.choice(c) for c in space.choices)).text for _ in range(200)})
        bad = [why for i, text in enumerate(texts) if (why := _check(text, 20_000 * units + i, run))]
        assert len(texts) > 150 and len(bad) <= (0 if units == 1 else len(texts) // 100), \
            f"{len(bad)} of {len(texts)}: " + "\n".join(bad)


@on_both
def test_betas_per_channel_or_shared_and_any_layout(run):
    """One beta per channel over (N, C, L) and (N, C, H, W) inputs, a linear layer's (N, C), one beta for all channels,
    and a non-contiguous x: the betas' gradients are summed per channel as eager's broadcasting does."""
    expr = Expression.parse("mix(x + beta, tanh(beta * x)) * x")
    triton = _kind(run)
    g = torch.Generator().manual_seed(4)
    for shape, cols in (((5, 3, 7), 3), ((2, 3, 4, 5), 3), ((9, 3), 3), ((5, 3, 7), 1), ((6, 8), 1)):
        x = torch.randn(*shape, generator=g) * 2
        beta = torch.rand(expr.n_betas, cols, generator=g) + 0.5
        dy = torch.randn(*shape, generator=g)
        for e, f in zip(_run(expr, "eager", x, beta, dy), _run(expr, triton, x, beta, dy)):
            torch.testing.assert_close(f, e, rtol=1e-4, atol=1e-5)
    x = torch.randn(4, 7, 3, generator=g).transpose(1, 2)  # (4, 3, 7), not contiguous
    beta, dy = torch.rand(expr.n_betas, 3, generator=g) + 0.5, torch.randn(4, 3, 7, generator=g)
    for e, f in zip(_run(expr, "eager", x, beta, dy), _run(expr, triton, x, beta, dy)):
        torch.testing.assert_close(f, e, rtol=1e-4, atol=1e-5)


@on_both
def test_the_constant_unary_ignores_an_operand_that_is_not_finite(run):
    """beta(exp(x)) is beta where exp(x) is inf (a program the parser cannot write, as a two-unit search builds it)."""
    ops = native.OPCODES
    code = torch.tensor([[ops["exp"], -1, -1, -1], [ops["beta"], 0, -1, 0]], dtype=torch.int32)
    x = torch.tensor([[0.5, 100.0, -100.0], [1e30, 2.0, 0.0]]).requires_grad_()
    beta = torch.tensor([[0.25, -1.5, 3.0]], requires_grad=True)
    y = run(code, x, beta)
    torch.testing.assert_close(y, beta.detach().expand(2, 3))
    y.sum().backward()
    torch.testing.assert_close(beta.grad, torch.full((1, 3), 2.0))
    torch.testing.assert_close(x.grad, torch.zeros(2, 3))


@on_both
def test_a_gradient_of_the_gradient_is_the_eager_codes(run):
    expr = Expression.parse("x * sigmoid(beta * x)")
    x = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(6))
    grads = []
    for triton in (False, True):
        xi = x.clone().requires_grad_()
        beta = torch.full((1, 2), 1.5, requires_grad=True)
        y = run(native.program(expr.root), xi, beta) if triton else kernel_module.kernel(expr, "eager")(xi, beta)
        (gx,) = torch.autograd.grad(y.sum(), xi, create_graph=True)
        grads.append(torch.autograd.grad(gx.pow(2).sum(), [xi, beta]))
    for e, f in zip(*grads):
        torch.testing.assert_close(f, e)


def test_the_kernels_compile_for_gpus():
    """The GPU module (libdevice's functions) compiles to machine code for sm_80 (A100) and sm_90 (H100, H200) with
    float32 and bfloat16 inputs: what a GPU's first call does, checked here without one."""
    pytest.importorskip("triton.backends.nvidia")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernels = cuda.module(interpret=False)
    ints = dict.fromkeys(("n_nodes", "numel", "channels", "inner", "beta_cols"), "i32")
    for dtype in ("fp32", "bf16"):
        signatures = [
            (kernels.forward_kernel, {"x_ptr": f"*{dtype}", "y_ptr": f"*{dtype}", "beta_ptr": "*fp32",
                                      "code_ptr": "*i32", "scratch_ptr": "*fp32", **ints, "BLOCK": "constexpr"}),
            (kernels.backward_kernel, {"x_ptr": f"*{dtype}", "dy_ptr": f"*{dtype}", "dx_ptr": f"*{dtype}",
                                       "beta_ptr": "*fp32", "gbeta_ptr": "*fp32", "code_ptr": "*i32",
                                       "scratch_ptr": "*fp32", "grads_ptr": "*fp32", "n_nodes": "i32", "numel": "i32",
                                       "channels": "i32", "inner": "i32", "beta_cols": "i32", "BLOCK": "constexpr"}),
        ]
        for fn, signature in signatures:
            for capability in (80, 90):
                compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs={"BLOCK": cuda.BLOCK}),
                                          target=GPUTarget("cuda", capability, 32),
                                          options=dict(cuda._options(False)))  # the launches' options
                assert len(compiled.asm["cubin"]) > 0
    from triton.backends.nvidia.compiler import CUDAOptions

    if "enable_reflect_ftz" in CUDAOptions.__dataclass_fields__:  # a Triton with the option keeps libdevice's denormals
        assert dict(cuda._options(False)) == {"enable_reflect_ftz": False}


def test_native_on_cuda_is_the_triton_kernel_and_records_it():
    """What a CUDA child gets for ``kernel: native`` (Triton present): the Triton kernel, recorded as native; the
    default there stays compiled (this kernel has not been timed on a GPU)."""
    assert kernel_module.resolve_kernel("native", "cuda") == "native"
    assert kernel_module.resolve_kernel(None, "cuda") == "compiled"
    assert kernel_module.resolve_kernel(None, "cuda", False) == "eager"  # not compiling: eager, not the untimed kernel
    assert kernel_module.resolve_kernel("native", "mps") == "eager"


def test_a_beta_that_does_not_fit_the_input_is_named_as_the_cpu_kernel_names_it():
    x = torch.randn(4, 6, 5)
    code = native.program(Expression.parse("x * sigmoid(beta * x)").root)
    with pytest.raises(ValueError, match=r"^beta of shape \[1, 4\] for an input of 6 channels$"):
        cuda.run(code, x, torch.ones(1, 4), graph_backward=None, interpret=True)
