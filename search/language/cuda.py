"""The native kernel's kind on CUDA: any expression of the language, forward and backward, by one Triton program.

A candidate is the same small program as on CPU (``native.program``: one instruction per operator node, opcode,
operand slots, beta row). Two Triton kernels interpret any program, so they are compiled once per machine and GPU
(Triton's own cache), never per candidate. Each program instance takes ``BLOCK`` elements: the forward walks the
instructions, a branch per opcode (the same for the whole block), keeping each node's values in a scratch row of its
own (global memory, read back by the thread that wrote it); the backward computes the values again, then walks the
instructions in reverse with the operators' backward formulas (those of torch's autograd, as the CPU kernel's),
adding each operand's gradient into its row (x's into dx) and writing each beta's gradient per element, which torch
then sums per channel (the two sums of a beta that ``mix`` reaches twice apart, each rounded, then added: as eager).
Saved for the backward: x and beta. The operators' code is the operator table's ``TRITON`` column
(``search.language.ops``). On a GPU the transcendental functions are libdevice's, the CUDA math library's that
torch's own CUDA operators call. With ``interpret`` (Triton's interpreter, on CPU tensors: how the tests check the
kernels without a GPU) they are torch's CPU functions.

Where a gradient of the gradient is asked for (``create_graph``), the eager code computes the gradient instead, as a
graph (``kernel.eager_backward``, passed in by the caller), as on CPU.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import math
import os
import re
import tempfile
import threading
from pathlib import Path

import torch

from search.language.ops import BINARY, EPS, TRITON, UNARY
from search.language import native
from search.language.files import atomic_write

BLOCK = 1024
FUNCTIONS = ("exp", "log", "log1p", "sin", "cos", "sinh", "cosh", "tanh", "asinh", "atan", "erf", "sqrt")
_LOCK = threading.Lock()
_MODULES: dict[bool, object] = {}


def _cases(backward: bool) -> str:
    """The kernels' branches, one per operator (but the identity), from ``ops.TRITON``."""
    lines = []
    first = True
    for op in UNARY + BINARY:
        if op.name not in TRITON:
            continue
        forward, grad = TRITON[op.name]
        lines.append(f"        {'if' if first else 'elif'} op == {native.OPCODES[op.name]}:  # {op.name}")
        first = False
        body = [s.strip() for s in grad.split(";") if s.strip()] if backward else [f"v = {forward}"]
        lines += [f"            {_constants(statement)}" for statement in body]
    return "\n".join(lines)


def _constants(code: str) -> str:
    """E and PI as literals: a Triton kernel reads no global but a constexpr."""
    return re.sub(r"\bPI\b", repr(math.pi), re.sub(r"\bE\b", repr(EPS), code))


_TEMPLATE = '''\
import triton
import triton.language as tl
{functions}

@triton.jit
def sgn(a):
    return tl.where(a > 0.0, 1.0, tl.where(a < 0.0, -1.0, 0.0))


@triton.jit
def sigm(a):
    return 1.0 / (1.0 + exp(-a))


@triton.jit
def sinc_pi(t):
    q = 3.141592653589793 * t
    return tl.where(t == 0.0, 1.0, sin(q) / q)


@triton.jit
def operands(x, rows, lane, sa, sb, pb, beta_ptr, bcol, beta_cols, mask, BLOCK: tl.constexpr):
    a = tl.load(rows + tl.maximum(sa, 0) * BLOCK + lane)
    a = tl.where(sa < 0, x, a)
    b = tl.load(rows + tl.maximum(sb, 0) * BLOCK + lane)
    b = tl.where(sb < 0, x, b)
    p = tl.load(beta_ptr + tl.maximum(pb, 0) * beta_cols + bcol, mask=mask & (pb >= 0), other=1.0).to(tl.float32)
    return a, b, p


@triton.jit
def values(x, rows, lane, code_ptr, n_nodes, beta_ptr, bcol, beta_cols, mask, BLOCK: tl.constexpr):
    """Every node's values in its row; returns the root's."""
    v = x
    for k in range(n_nodes):
        op = tl.load(code_ptr + 4 * k)
        a, b, p = operands(x, rows, lane, tl.load(code_ptr + 4 * k + 1), tl.load(code_ptr + 4 * k + 2),
                           tl.load(code_ptr + 4 * k + 3), beta_ptr, bcol, beta_cols, mask, BLOCK)
{forward}
        tl.store(rows + k * BLOCK + lane, v)
    return v


@triton.jit
def block(x_ptr, n_nodes, numel, channels, inner, beta_cols, BLOCK: tl.constexpr):
    """This program instance's elements: their lanes, offsets, mask, x, beta column, and where its scratch rows start
    (row k of node k, BLOCK values each)."""
    pid = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK)
    offs = pid * BLOCK + lane
    mask = offs < numel
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    bcol = tl.where(beta_cols > 1, (offs // inner) % channels, 0)
    return lane, offs, mask, x, bcol, pid * n_nodes * BLOCK


@triton.jit(do_not_specialize=["n_nodes", "numel", "channels", "inner", "beta_cols"])
def forward_kernel(x_ptr, y_ptr, beta_ptr, code_ptr, scratch_ptr, n_nodes, numel, channels, inner, beta_cols,
                   BLOCK: tl.constexpr):
    lane, offs, mask, x, bcol, first = block(x_ptr, n_nodes, numel, channels, inner, beta_cols, BLOCK)
    rows = scratch_ptr + first
    v = values(x, rows, lane, code_ptr, n_nodes, beta_ptr, bcol, beta_cols, mask, BLOCK)
    tl.store(y_ptr + offs, v.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["n_nodes", "numel", "channels", "inner", "beta_cols"])
def backward_kernel(x_ptr, dy_ptr, dx_ptr, beta_ptr, gbeta_ptr, code_ptr, scratch_ptr, grads_ptr, n_nodes, numel,
                    channels, inner, beta_cols, BLOCK: tl.constexpr):
    lane, offs, mask, x, bcol, first = block(x_ptr, n_nodes, numel, channels, inner, beta_cols, BLOCK)
    rows = scratch_ptr + first
    grows = grads_ptr + first
    values(x, rows, lane, code_ptr, n_nodes, beta_ptr, bcol, beta_cols, mask, BLOCK)
    zero = tl.full([BLOCK], 0.0, tl.float32)
    for k in range(n_nodes - 1):
        tl.store(grows + k * BLOCK + lane, zero)
    tl.store(grows + (n_nodes - 1) * BLOCK + lane, tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32))
    dx = zero
    for j in range(n_nodes):
        k = n_nodes - 1 - j
        op = tl.load(code_ptr + 4 * k)
        sa = tl.load(code_ptr + 4 * k + 1)
        sb = tl.load(code_ptr + 4 * k + 2)
        pb = tl.load(code_ptr + 4 * k + 3)
        a, b, p = operands(x, rows, lane, sa, sb, pb, beta_ptr, bcol, beta_cols, mask, BLOCK)
        v = tl.load(rows + k * BLOCK + lane)
        g = tl.load(grows + k * BLOCK + lane)
        ga = zero
        gb = zero
        gp = zero
        gq = zero
{backward}
        if sa < 0:
            dx = dx + ga
        else:
            tl.store(grows + sa * BLOCK + lane, tl.load(grows + sa * BLOCK + lane) + ga)
        if sb < 0:
            dx = dx + gb
        else:
            tl.store(grows + sb * BLOCK + lane, tl.load(grows + sb * BLOCK + lane) + gb)
        if pb >= 0:
            tl.store(gbeta_ptr + (2 * pb) * numel + offs, gp, mask=mask)
            tl.store(gbeta_ptr + (2 * pb + 1) * numel + offs, gq, mask=mask)
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
'''

_DEVICE_FUNCTIONS = "from triton.language.extra import libdevice\n" + "\n".join(
    f"{name} = libdevice.{name}" for name in FUNCTIONS)
_INTERPRETED_FUNCTIONS = "from search.language.cuda import interpreted_function\n" + "\n".join(
    f"{name} = interpreted_function({name!r})" for name in FUNCTIONS)


def source(interpret: bool = False) -> str:
    """The kernels' module: for a GPU (libdevice's functions), or for Triton's interpreter (torch's CPU functions)."""
    return _TEMPLATE.format(functions=_INTERPRETED_FUNCTIONS if interpret else _DEVICE_FUNCTIONS,
                            forward=_cases(False), backward=_cases(True))


def interpreted_function(name: str):
    """``name`` (a FUNCTIONS entry) on the interpreter's tensors (numpy arrays): torch's CPU function of it."""
    import numpy as np
    from triton.language import core
    from triton.runtime.interpreter import TensorHandle

    fn = getattr(torch, name)

    def apply(a):
        out = fn(torch.from_numpy(np.ascontiguousarray(a.handle.data, dtype=np.float32))).numpy()
        return core.tensor(TensorHandle(out, a.handle.dtype.scalar), a.type)
    return apply


@contextlib.contextmanager
def _interpreting(interpret: bool):
    """Triton's interpreter reads TRITON_INTERPRET where a kernel is defined and again where it is launched."""
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = before


def module(interpret: bool = False):
    """The kernels, written to a file named by their source's hash (Triton reads a kernel's source) and loaded."""
    if interpret in _MODULES:
        return _MODULES[interpret]
    with _LOCK:
        if interpret not in _MODULES:
            text = source(interpret)
            name = f"actsearch_triton_{hashlib.sha256(text.encode()).hexdigest()[:16]}"
            folder = Path(tempfile.gettempdir()) / "actsearch_triton"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}.py"
            if not path.exists() or path.read_text() != text:
                atomic_write(path, text)
            with _interpreting(interpret):
                spec = importlib.util.spec_from_file_location(name, path)
                loaded = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(loaded)
            _MODULES[interpret] = loaded
    return _MODULES[interpret]


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether Triton can be imported (it ships with torch's CUDA builds on Linux)."""
    try:
        import triton  # noqa: F401
    except Exception:  # noqa: BLE001  (no triton, or one that does not load)
        return False
    return True


def supports(x: torch.Tensor) -> bool:
    """Whether this kernel runs ``x``: a CUDA tensor of a floating type, Triton present."""
    return x.device.type == "cuda" and x.dtype in (torch.float32, torch.float16, torch.bfloat16) and available()


def _blocks(numel: int) -> tuple[int]:
    return ((numel + BLOCK - 1) // BLOCK,)


@functools.cache
def _options(interpret: bool) -> tuple[tuple[str, bool], ...]:
    """Compile options for the launches: libdevice keeps denormals (Triton's NVIDIA default flushes them to zero,
    which eager's CUDA math does not: exp(-88.7) is a denormal there, and a quotient or a log of it then differs), where
    this Triton has the option; none for the interpreter."""
    if interpret:
        return ()
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
    except ImportError:
        return ()
    return (("enable_reflect_ftz", False),) if "enable_reflect_ftz" in CUDAOptions.__dataclass_fields__ else ()


def _launch_forward(kernels, x, beta, code, channels, inner, interpret):
    numel, nodes = x.numel(), code.shape[0]
    y = torch.empty_like(x)
    grid = _blocks(numel)
    scratch = torch.empty(grid[0] * nodes * BLOCK, device=x.device, dtype=torch.float32)
    with _interpreting(interpret):
        kernels.forward_kernel[grid](x, y, beta, code, scratch, nodes, numel, channels, inner, beta.shape[1],
                                     BLOCK=BLOCK, **dict(_options(interpret)))
    return y


def _launch_backward(kernels, x, beta, code, dy, channels, inner, n_betas, interpret):
    numel, nodes = x.numel(), code.shape[0]
    dx = torch.empty_like(x)
    grid = _blocks(numel)
    scratch = torch.empty(2, grid[0] * nodes * BLOCK, device=x.device, dtype=torch.float32)
    gbeta = torch.empty(max(1, n_betas), 2, numel, device=x.device, dtype=torch.float32)
    with _interpreting(interpret):
        kernels.backward_kernel[grid](x, dy, dx, beta, gbeta, code, scratch[0], scratch[1], nodes, numel, channels,
                                      inner, beta.shape[1], BLOCK=BLOCK, **dict(_options(interpret)))
    if n_betas == 0:
        return dx, torch.zeros_like(beta)
    # each beta's two sums over its channel's elements, rounded to beta's type, then added (as eager's autograd)
    if beta.shape[1] > 1:
        sums = gbeta[:n_betas].view(n_betas, 2, -1, beta.shape[1], inner).sum(dim=(2, 4))
    else:
        sums = gbeta[:n_betas].sum(dim=2, keepdim=True)
    sums = sums.to(beta.dtype)
    return dx, sums[:, 0] + sums[:, 1]


class _Function(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta, code, programs, channels, inner, interpret, graph_backward):
        kernels = module(interpret)
        x_c = x.contiguous()
        device_code = programs[0]
        ctx.save_for_backward(x, beta)
        ctx.program = (code, programs[1], channels, inner, interpret)
        ctx.n_betas = programs[2]
        ctx.graph_backward = graph_backward
        if device_code.shape[0] == 0:  # the identity
            return x_c.clone()
        return _launch_forward(kernels, x_c, beta.contiguous(), device_code, channels, inner, interpret)

    @staticmethod
    def backward(ctx, dy):
        x, beta = ctx.saved_tensors
        code, device_code, channels, inner, interpret = ctx.program
        x_grad, beta_grad = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():  # a graph of the gradient is being built: the eager code's, as a graph
            dx, dbeta = ctx.graph_backward(code, x, beta, dy, x_grad, beta_grad)
        elif device_code.shape[0] == 0:
            dx, dbeta = dy.clone(), torch.zeros_like(beta)
        else:
            n_betas = ctx.n_betas
            dx, dbeta = _launch_backward(module(interpret), x.contiguous(), beta.contiguous(), device_code,
                                         dy.contiguous().to(x.dtype), channels, inner, n_betas, interpret)
            if beta.shape[0] > n_betas:  # rows no instruction reads
                dbeta = torch.cat([dbeta, beta.new_zeros(beta.shape[0] - n_betas, beta.shape[1])])
        return (dx if x_grad else None, dbeta if beta_grad else None, None, None, None, None, None, None)


_DEVICE_CODE: dict[tuple[bytes, str], tuple[torch.Tensor, torch.Tensor, int]] = {}


def backward_program(code: torch.Tensor) -> torch.Tensor:
    """``code`` with the opcode of every node no gradient reaches set to -1 (no branch: its backward does not run):
    the nodes under a ``beta``, whose value ignores its operand, as autograd leaves them (where such a node's value
    is inf, running its backward on a zero gradient would make NaN)."""
    rows = code.tolist()
    live = [False] * len(rows)
    if rows:
        live[-1] = True
    for k in range(len(rows) - 1, -1, -1):
        opcode, a, b, _ = rows[k]
        if live[k] and opcode != native.OPCODES["beta"]:
            for slot in (a, b):
                if slot >= 0:
                    live[slot] = True
    out = code.clone()
    out[[k for k, alive in enumerate(live) if not alive], 0] = -1
    return out


def run(code: torch.Tensor, x: torch.Tensor, beta: torch.Tensor, graph_backward, interpret: bool = False
        ) -> torch.Tensor:
    """The program ``code`` applied to ``x`` with ``beta`` ((n_betas, channels) or (n_betas, 1)), autograd-aware.
    graph_backward: what computes the gradient where a graph of it is asked for (``kernel.eager_backward``: passed in,
    as this module does not import the kernels above it); interpret: run the kernels with Triton's interpreter (x on
    the CPU; tests)."""
    channels, inner = native._dims(x)
    if beta.dim() != 2 or beta.shape[1] not in (1, channels):
        raise ValueError(f"beta of shape {list(beta.shape)} for an input of {channels} channels")  # as native.cpp says it
    key = (code.numpy().tobytes(), str(x.device))
    programs = _DEVICE_CODE.get(key)
    if programs is None:
        n_betas = int(code[:, 3].max()) + 1 if code.shape[0] else 0  # the betas the program reads (rows 0..n-1)
        programs = _DEVICE_CODE[key] = (code.to(x.device), backward_program(code).to(x.device), n_betas)
    return _Function.apply(x, beta, code, programs, channels, inner, interpret, graph_backward)
