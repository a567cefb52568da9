"""The native kernel: any expression of the language, forward and backward, in one pass over memory per direction.

A candidate becomes a small program (``program``: one instruction per operator node, in evaluation order: opcode,
operand slots, beta row); one C++ kernel (``native.cpp``, its operator cases filled in from the operator table's
``NATIVE`` code) interprets any program over tiles of 512 elements, so it is compiled once per machine (the first use,
cached in torch's extension directory under a name that hashes its source), never per candidate. A row that computes
what an earlier row computes (a repeated subtree without betas) takes its value: the forward computes it once, and the
backward runs it once on the sum of both uses' gradients, as autograd does on a graph; a tile whose dx is then not
finite is run again use by use, as eager's code does, for eager's NaN or inf (``native.cpp``, ``Program``). The forward
reads x and writes y; the backward needs the node values its formulas read (in ``sin(x) + cos(x)`` none: add's gradient
reads no operand, sin's and cos's read x). Where a gradient will be asked for, the forward also writes those of them
that a vector math function computed (exp, sin, tanh, ...: ``_costly``; in ``x * sigmoid(beta * x)`` the sigmoid), one
tensor of x's size each, and the backward loads them and computes the cheap rest again per tile: the same values, bit
for bit, in less time than computing everything again (``benchmarks/activation_speed.py --saved-values``). It runs the
operators' backward formulas in reverse (the same formulas as torch's autograd, so gradients and their non-finite values
agree with the eager path), writes dx and sums the betas' gradients per channel (by position in x's type where no sum
can overflow, else each tile's run of a channel, as torch's sum; added in double: ``BetaSums``; the threads' sums in the
order of their tiles, so the same bits on every run). That backward is not differentiable itself: where a gradient of
the gradient is asked for (``create_graph``, e.g. a gradient penalty), the eager code computes the gradient instead, as
a graph (``kernel.eager_backward``, which the C++ calls by name: this module does not import the kernels above it).
Parallel over tiles with ``at::parallel_for`` (``torch.get_num_threads()``: ``child.threads``; built with OpenMP, see
``cflags``). CPU only, float32 and float64; anything else runs the eager code. Without a working compiler the kernel is
unavailable: one warning, and callers run eager.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import warnings
from pathlib import Path

import torch

from search.language.expression import Node
from search.language.ops import BINARY, EPS, NATIVE, UNARY

OPCODES: dict[str, int] = {op.name: i for i, op in enumerate(UNARY + BINARY)}
TEMPLATE = Path(__file__).with_name("native.cpp")

# What the extension exports: the autograd function (apply) and its two halves, with and without saved values
# (benchmarks time them side by side)
FUNCTIONS = ["apply", "forward", "backward", "forward_saving", "backward_saved"]
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}  # "module": the loaded extension, or "error": why it could not be built
_OPS: dict[str, object] = {}  # "native": the kernel as a torch custom operator (define_ops), once per process


def program(root: Node) -> torch.Tensor:
    """The instructions of the tree ``root``: int32 ``(nodes, 4)`` rows of opcode, operand slots (-1: the input x;
    -1 for a unary's second), beta row (-1: none). Betas are numbered in evaluation order, children first, as in
    ``search.language.kernel``'s generated code; the last row is the root (no rows: the identity)."""
    rows: list[tuple[int, int, int, int]] = []
    betas = [0]

    def emit(node: Node) -> int:
        if node.is_x:
            return -1
        slots = [emit(child) for child in node.children] + [-1]
        beta = -1
        if node.op.uses_beta:
            beta, betas[0] = betas[0], betas[0] + 1
        rows.append((OPCODES[node.op.name], slots[0], slots[1], beta))
        return len(rows) - 1

    emit(root)
    return torch.tensor(rows, dtype=torch.int32).reshape(-1, 4)


def tree(code: torch.Tensor) -> Node:
    """The tree a program was made from (``program``'s inverse)."""
    ops = UNARY + BINARY
    nodes: list[Node] = []
    for opcode, a, b, _ in code.tolist():
        op = ops[opcode]
        slots = (a, b)[:op.arity]
        nodes.append(Node(op, tuple(nodes[s] if s >= 0 else Node() for s in slots)))
    return nodes[-1] if nodes else Node()


def _cases(backward: bool) -> str:
    """The C++ ``case`` of every operator (but the identity), from ``ops.NATIVE``."""
    out = []
    for op in UNARY + BINARY:
        if op.name not in NATIVE:
            continue
        forward, grad = NATIVE[op.name]
        loads = ["const T a = A[i];"] + (["const T b = B[i];"] if op.arity == 2 else [])
        loads += ["const T p = Pk[i];"] if op.uses_beta else []
        if not backward:
            body = f"out[i] = {forward};"
        else:
            # A gradient row is stored by its first writer and added to by the others (a value with two uses, and x:
            # Program::add in native.cpp)
            outs = [name for name in ("ga", "gb", "gp", "gq") if f"{name} =" in grad]
            stores = {"ga": "if (addA) GA[i] += ga; else GA[i] = ga;", "gb": "if (addB) GB[i] += gb; else GB[i] = gb;",
                      "gp": "GPk[i] = gp;", "gq": "GPk[TILE + i] = gq;"}
            loads += ["const T v = out[i];", "const T g = Gk[i];", f"T {', '.join(f'{n} = T(0)' for n in outs)};"]
            body = f"{grad} {' '.join(stores[n] for n in outs)}"
        lines = ['_Pragma("omp simd")', f"for (int64_t i = 0; i < n; ++i) {{ {' '.join(loads)} {body} }}", "break;"]
        out.append(f"      case {OPCODES[op.name]}: {{ /* {op.name} */\n" +
                   "".join(f"        {line.strip()}\n" for line in lines if line) + "      }")
    return "\n".join(out)


def source() -> str:
    """The kernel's C++: ``native.cpp`` with the operator table's cases filled in."""
    text = TEMPLATE.read_text()
    mentions = "\n".join(f"    case {OPCODES[name]}:  /* {name} */\n      return " +
                          " || ".join([f"what == '{w}'" for w in _mentions(grad)] or ["false"]) + ";"
                          for name, (_, grad) in NATIVE.items())
    costly = "\n".join(f"    case {OPCODES[name]}:  /* {name} */\n      return true;"
                       for name, (forward, _) in NATIVE.items() if _costly(forward))
    return (text.replace("/*EPS*/", repr(EPS)).replace("/*MENTIONS*/", mentions).replace("/*COSTLY*/", costly)
            .replace("/*FORWARD*/", _cases(False)).replace("/*BACKWARD*/", _cases(True)))


def _mentions(grad: str) -> str:
    """What an operator's backward code (``ops.NATIVE``) reads, of its operands' values ``a`` and ``b`` and its own
    value ``v``; ``q`` where it writes a second gradient row for its beta (``gq``); ``A`` and ``B`` where it writes its
    operands' gradients (``ga``, ``gb``: not ``beta``'s, whose value ignores its operand)."""
    return "".join(w for w in "abv" if re.search(rf"\b{w}\b", grad)) + ("q" if re.search(r"\bgq\b", grad) else "") + \
        "".join(w.upper() for w in "ab" if re.search(rf"\bg{w}\s*=", grad))


def _costly(forward: str) -> bool:
    """Whether an operator's forward code (``ops.NATIVE``) calls a vector math function (exp, log, sin, tanh, erf, ...,
    also through ``sigm`` and ``sinc_pi``): its value is worth saving for the backward rather than computing again."""
    return re.search(r"\bvm::(exp|log|log1p|sin|cos|sinh|cosh|tanh|asinh|atan|erf)\(|\b(sigm|sinc_pi)\(",
                     forward) is not None


def cflags() -> list[str]:
    """The compiler's flags: OpenMP (``at::parallel_for`` is a header's loop, run on ``torch.get_num_threads()`` threads
    only where the kernel is built with it; it links the libgomp torch has loaded, so the two share one thread pool and
    ``torch.set_num_threads``), vectorised (AVX2 and FMA where torch finds them on this CPU, and 512-bit AVX-512 vectors
    where torch does: sixteen floats an instruction, 0.85x the kernel's time over 20 sample functions), no errno or trap
    bookkeeping (values are unchanged), no contraction into fused multiply-adds (each operation rounds as torch's), no
    sinking of a vector math call into the branch that uses it (the loop would stay scalar: ``pick`` in native.cpp)."""
    flags = ["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-fno-tree-sink"]
    capability = torch.backends.cpu.get_cpu_capability()
    if capability in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    if capability == "AVX512":
        flags += ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mprefer-vector-width=512"]
    return flags


def extension():
    """The compiled kernel (built on first use, then loaded from torch's extension cache), or None with one warning
    when it cannot be built (no compiler, no headers)."""
    if "module" in _STATE or "error" in _STATE:
        return _STATE.get("module")
    with _LOCK:
        if "module" not in _STATE and "error" not in _STATE:
            src, flags = source(), cflags()
            name = "actsearch_native_" + hashlib.sha256((src + " ".join(flags + FUNCTIONS)).encode()).hexdigest()[:16]
            quiet = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found": a CPU kernel
            level = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                from torch.utils.cpp_extension import load_inline

                _STATE["module"] = load_inline(name, cpp_sources=[src], functions=FUNCTIONS,
                                               extra_cflags=flags, extra_ldflags=["-lmvec", "-fopenmp"],
                                               verbose=False)
            except Exception as exc:  # no compiler or headers: the eager path still works
                _STATE["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
                warnings.warn(f"native activation kernel unavailable, running eager: {_STATE['error']}",
                              RuntimeWarning)
            finally:
                quiet.setLevel(level)
    return _STATE.get("module")


def unavailable_reason() -> str | None:
    """Why the native kernel could not be built on this machine (the build's first error line), or None."""
    return _STATE.get("error")


def available() -> bool:
    """Whether the native kernel is (or can be) built on this machine."""
    return extension() is not None


def supports(x: torch.Tensor) -> bool:
    """Whether the native kernel runs ``x`` (a CPU float32 / float64 tensor) rather than the eager code."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and available()


def _dims(x: torch.Tensor) -> tuple[int, int]:
    """x's channels (dim 1; 1 for a vector) and positions per channel (the product of the dims after it)."""
    channels = x.shape[1] if x.dim() >= 2 else 1
    inner = 1
    for size in x.shape[2:]:
        inner *= size
    return channels, max(inner, 1)


def run(code: torch.Tensor, x: torch.Tensor, beta: torch.Tensor | None) -> torch.Tensor:
    """The program ``code`` applied to ``x`` with ``beta`` ((n_betas, channels) or (n_betas, 1); None for a program
    without betas); autograd-aware (the kernel's own C++ autograd function: x's and beta's gradients; a gradient of a
    gradient by ``search.language.kernel.eager_backward``). A beta of another shape is a ValueError. Callers check
    ``supports(x)`` first. Inside a graph that ``torch.compile`` traces (a compiled child with ``kernel: native``) it
    runs as a torch custom operator instead (``define_ops``, which the caller has run), so the graph is not cut at
    each activation."""
    if torch.compiler.is_compiling():
        return _OPS["native"](x, x.new_empty(0, 1) if beta is None else beta, code)
    return extension().apply(x, beta, code)


def define_ops(graph_backward) -> None:
    """Define the kernel as a torch custom operator ``actsearch::native``, once per process (the caller, the
    activation's ``Kernel``, does before its first call), for graphs that ``torch.compile`` traces: its fake function
    gives y's shape, and its gradient is a second operator, ``actsearch::native_backward``, which computes every value
    again (how many values the forward saves depends on the program, which a fake function cannot read). Traced, a
    pybind function such as ``apply`` would cut the graph at every activation site, with a page-long warning. A
    gradient of a gradient is ``graph_backward``'s (``search.language.kernel.eager_backward``), as ``apply``'s is."""
    if "native" in _OPS:
        return
    with _LOCK:
        if "native" not in _OPS:
            _OPS["native"] = _define_ops(graph_backward)


def _define_ops(graph_backward):
    @torch.library.custom_op("actsearch::native", mutates_args=(),
                             schema="(Tensor x, Tensor beta, Tensor code) -> Tensor")
    def native_op(x, beta, code):
        channels, inner = _dims(x)
        return extension().forward(x.contiguous(), beta.to(x.dtype).contiguous(), code, channels, inner)

    @native_op.register_fake
    def _(x, beta, code):
        return x.new_empty(x.shape)

    @torch.library.custom_op("actsearch::native_backward", mutates_args=(),
                             schema="(Tensor x, Tensor beta, Tensor code, Tensor dy) -> (Tensor, Tensor)")
    def native_backward(x, beta, code, dy):
        channels, inner = _dims(x)
        dx, dbeta = extension().backward(x.contiguous(), beta.to(x.dtype).contiguous(), code,
                                         dy.to(x.dtype).contiguous(), channels, inner, True)
        return dx, dbeta.to(beta.dtype)

    @native_backward.register_fake
    def _(x, beta, code, dy):
        return x.new_empty(x.shape), beta.new_empty(beta.shape)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, dy):
        x, beta, code = ctx.saved_tensors
        if torch.is_grad_enabled():  # a graph of the gradient: the eager code's
            dx, dbeta = graph_backward(code, x, beta, dy, True, True)
        else:
            dx, dbeta = native_backward(x, beta, code, dy)
        return dx, (dbeta if ctx.needs_input_grad[1] else None), None

    native_op.register_autograd(backward, setup_context=setup_context)
    return native_op
