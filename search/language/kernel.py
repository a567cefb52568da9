"""Running an expression as a torch function and an ``nn.Module``: three kernels.

- eager: each canonical expression text becomes generated Python source (one line per operator, one torch op each);
- compiled: that code fused by ``torch.compile``; its own code object per expression, so the compiler caches a kernel
  per expression instead of thrashing one shared function's cache (a compilation failure falls back to eager, once,
  with a warning);
- native: the expression's operator program run by ``search.language.native``'s one C++ kernel (CPU; compiled once
  per machine, never per candidate; eager where it cannot run).

Kernels are cached per process by ``(text, kind)``. ``resolve_kernel`` says which kind "auto" means on a device.
"""
from __future__ import annotations

import os
import threading
import warnings

import torch
from torch import nn

from search.language import cuda, native
from search.language.expression import Expression, Node

KERNELS = ("eager", "compiled", "native")
_KERNELS: dict[tuple[str, str], "Kernel"] = {}
_LOCK = threading.Lock()


def _codegen(root: Node, text: str):
    """Generated function ``f(x, beta)`` for the tree ``root`` (printed as ``text``); ``beta``: (n_betas, C)."""
    lines: list[str] = []
    names: dict[str, object] = {}
    counter = {"t": 0, "b": 0}

    def emit(node) -> str:
        if node.is_x:
            return "x"
        args = [emit(child) for child in node.children]
        names[f"op_{node.op.name}"] = node.op.fn
        if node.op.uses_beta:
            args.append(f"b[{counter['b']}]")
            counter["b"] += 1
        var = f"t{counter['t']}"
        counter["t"] += 1
        lines.append(f"    {var} = op_{node.op.name}({', '.join(args)})")
        return var

    out = emit(root)
    body = "\n".join(lines)
    src = (
        "def activation(x, beta):\n"
        "    shape = (1, beta.shape[1]) + (1,) * (x.dim() - 2) if x.dim() >= 2 else (1,) * x.dim()\n"
        "    b = beta.reshape((beta.shape[0],) + shape)\n"
        f"{body}\n"
        f"    return {out}\n"
    )
    scope: dict[str, object] = dict(names)
    exec(compile(src, f"<actsearch {text}>", "exec"), scope)
    fn = scope["activation"]
    fn.__qualname__ = fn.__name__ = "activation"
    return fn, src


def _reads_x(node) -> bool:
    """Whether the function's value depends on x through its graph: ``beta``'s argument is ignored."""
    if node.is_x:
        return True
    return node.op.name != "beta" and any(_reads_x(child) for child in node.children)


class Kernel:
    """A callable ``(x, beta) -> y`` for one expression: eager, fused with ``torch.compile``, or native (the C++
    kernel on CPU, the Triton one on CUDA)."""

    def __init__(self, expr: Expression, kind: str):
        self.text = expr.text
        self.kind = kind
        self.eager, self.source = _codegen(expr.root, expr.text)
        self.fn = torch.compile(self.eager, dynamic=None) if kind == "compiled" else self.eager
        self.code = native.program(expr.root) if kind == "native" else None
        if self.code is not None:
            native.define_ops(eager_backward)  # what a torch.compile'd graph calls instead of the C++ autograd function
        self.reads_x = _reads_x(expr.root)  # a function of the betas alone gives x no gradient, in eager's graph too
        self.failed: str | None = None

    def __call__(self, x: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
        """``beta``: (n_betas, channels) or (n_betas, 1); None where the expression has no betas. On CPU the result
        has the type torch's promotion gives x and beta (a float64 beta with float32 x: float64), as the eager code's;
        on CUDA the Triton kernel computes in float32 and returns x's type (a bf16 child's activations stay bf16)."""
        if self.code is not None and x.device.type == "cpu" and beta is not None and beta.dtype != x.dtype:
            common = torch.promote_types(x.dtype, beta.dtype)  # the C++ kernel takes one type
            x, beta = x.to(common), beta.to(common)
        if self.code is not None and not self.reads_x:
            x = x.detach()  # x's gradient is None, not zeros, as eager's: an optimiser then skips what lies before it
        if self.code is not None and native.supports(x):
            return native.run(self.code, x, beta)
        if beta is None:
            beta = x.new_ones(1, 1)
        if self.code is not None and cuda.supports(x):
            return cuda.run(self.code, x, beta, graph_backward=eager_backward)
        if self.fn is self.eager:
            return self.eager(x, beta)
        try:
            return self.fn(x, beta)
        except Exception as exc:  # compilation unavailable (no compiler, unsupported backend): run eager from now on
            self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
            warnings.warn(f"torch.compile failed for {self.text!r}, running eager: {self.failed}", RuntimeWarning)
            self.fn = self.eager
            return self.eager(x, beta)


def kernel(expr: Expression, kind: str | bool) -> Kernel:
    """The process-wide cached kernel of ``kind`` (eager | compiled | native; True / False: compiled / eager) for an
    expression (keyed by its canonical text)."""
    kind = {True: "compiled", False: "eager"}.get(kind, kind) if isinstance(kind, bool) else kind
    if kind not in KERNELS:
        raise ValueError(f"kernel {kind!r}: one of {', '.join(KERNELS)}")
    key = (expr.text, kind)
    k = _KERNELS.get(key)
    if k is not None:  # lock-free hit: a lock here would break the graph of a torch.compile'd child at every site
        return k
    with _LOCK:
        k = _KERNELS.get(key)
        if k is None:
            k = _KERNELS[key] = Kernel(expr, kind)
    return k


def resolve_kernel(kind: str | None, device: torch.device | str, compile: bool | None = None) -> str:
    """The kernel a candidate runs with on ``device``: ``kind`` (eager | compiled | native; None or "auto": compiled
    where ``compile`` or, when that is None, ``compile_default`` says so, else native on CPU, eager elsewhere) with
    native replaced by eager where it cannot run (no compiler on a CPU, no Triton on CUDA, another device). Native is
    the C++ kernel on CPU (``search.language.native``) and the Triton one on CUDA (``search.language.cuda``: never
    timed on a GPU yet, so not CUDA's default, which compiles). Native is the CPU default because it is faster than
    eager (50 one-unit and 50 two-unit functions, whole 500-step proxy children, the 81 that do not diverge: median
    1.19x relu's time against eager's 2.08x on an Intel VM, 1.23x against 1.95x on an AMD one, faster for 80 or 81 of
    them: docs/benchmarks.md) and disagrees with eager on under 1% of sampled two-unit functions at extreme points. Its
    first build (about 40 s, once per machine) does not count against a child's time limits
    (``evaluator.train.prepare_kernel``)."""
    device = torch.device(device)
    if kind in (None, "auto"):
        compiled = compile if compile is not None else compile_default(device)
        kind = "compiled" if compiled else "native" if device.type == "cpu" else "eager"
    if kind == "native" and not (native.available() if device.type == "cpu" else
                                 device.type == "cuda" and cuda.available()):
        return "eager"
    return kind


def eager_backward(code: torch.Tensor, x: torch.Tensor, beta: torch.Tensor, dy: torch.Tensor, x_grad: bool,
                   beta_grad: bool) -> list[torch.Tensor]:
    """x's and beta's gradients by the eager code, as a graph: what the kernel's backward runs when a gradient of the
    gradient is asked for (``create_graph``; its own backward is not differentiable). Called from ``native.cpp``
    (``native.tree`` gives the program's tree); a gradient not asked for is an empty tensor."""
    inputs = ((x, x_grad), (beta, beta_grad))
    with torch.enable_grad():
        y = kernel(Expression(native.tree(code)), "eager")(x, beta)
        grads = iter(torch.autograd.grad(y, [t for t, want in inputs if want], dy, create_graph=True,
                                         materialize_grads=True))  # zeros for an input y does not depend on
    return [next(grads) if want else t.new_empty(0) for t, want in inputs]


def compile_default(device: torch.device) -> bool:
    """Fuse on CUDA always; on CPU only when ``ACTSEARCH_COMPILE=1`` (compiling costs seconds per new expression)."""
    if device.type == "cuda":
        return True
    return os.environ.get("ACTSEARCH_COMPILE", "0") == "1"


class Activation(nn.Module):
    """A searched activation function with one per-channel beta per occurrence (``beta``: (n_betas, channels)).

    Picklable: it holds the expression (which pickles as its text); the kernel is looked up from the process cache.
    """

    def __init__(self, expr: Expression, channels: int | None, compile: bool | None = None, kernel: str | None = None):
        super().__init__()
        self.expression = expr
        self.text = expr.text
        self.n_betas = expr.n_betas
        self.compile = compile
        self.kernel = kernel
        self._kernels: dict[torch.device, Kernel] = {}  # per device: resolved once (a call costs ~5 us less)
        _init_betas(self, self.n_betas, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self._kernels.get(x.device)
        if k is None:
            k = self._kernels[x.device] = kernel(self.expression, resolve_kernel(self.kernel, x.device, self.compile))
        return k(x, self.beta)

    def __getstate__(self):
        return {**self.__dict__, "_kernels": {}}  # kernels are the process's: looked up again after a copy

    def __setstate__(self, state):
        super().__setstate__({"_kernels": {}, **state})  # a module pickled before the cache existed

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _load_lazy_beta(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        channels = None if self.beta is None or isinstance(self.beta, nn.UninitializedParameter) else self.beta.shape[1]
        return f"{self.text!r}, n_betas={self.n_betas}, channels={channels}"


def _init_betas(module: nn.Module, n_betas: int, channels: int | None) -> None:
    """``module.beta``: (n_betas, channels) ones; none without betas; sized by the first input when channels is None.
    (``search.analysis.export`` writes this function's source into exported files.)"""
    if n_betas == 0:
        module.register_parameter("beta", None)
    elif channels is None:
        module.beta = nn.UninitializedParameter()
        module.register_forward_pre_hook(_materialize_beta)
    else:
        module.beta = nn.Parameter(torch.ones(n_betas, channels))


def _materialize_beta(module: nn.Module, args):
    if isinstance(module.beta, nn.UninitializedParameter):
        x = args[0]
        channels = x.shape[1] if x.dim() >= 2 else 1
        module.beta.materialize((module.n_betas, channels), device=x.device, dtype=x.dtype)
        with torch.no_grad():
            module.beta.fill_(1.0)


def _load_lazy_beta(module: nn.Module, state_dict, prefix: str) -> None:
    """A still-lazy beta takes its shape from the saved one, so trained betas load before any forward."""
    saved = state_dict.get(prefix + "beta")
    if saved is not None and isinstance(module.beta, nn.UninitializedParameter):
        module.beta.materialize(tuple(saved.shape), device=saved.device, dtype=saved.dtype)


def activation_module(expr: Expression, channels: int | None = None, compile: bool | None = None,
                      kernel: str | None = None) -> Activation:
    """A ``torch.nn.Module`` computing ``expr`` with one per-channel beta per occurrence (initialised to 1).

    channels: size of the input's dim 1; ``None`` sizes the betas from the first input (a lazy module: run one forward
    before building the optimizer). compile: ``True`` fuses with ``torch.compile`` (falling back to eager if compilation
    fails); ``None`` compiles on CUDA, and on CPU when ``ACTSEARCH_COMPILE=1``; otherwise (and for ``False``) the native
    kernel runs it on CPU, eager ops elsewhere. kernel: eager | compiled | native | auto (None): overrides ``compile``
    when given.
    """
    return Activation(expr, channels, compile, kernel)
