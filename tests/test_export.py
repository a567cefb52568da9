"""Exported activation files: standalone (torch only), and computing what the searched module computes."""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap

import pytest
import torch

from search.analysis.export import export_source, write_export
from search.language.errors import UserError
from search.language.expression import Expression, X, apply
from search.language.kernel import activation_module
from search.language.ops import BINARY, UNARY

CHANNELS = 5
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# on CUDA the reference module is fused by torch.compile, the exported one runs eager ops
TOL = dict(rtol=1e-4, atol=1e-5) if DEVICE == "cuda" else dict(rtol=1e-6, atol=1e-7)

HAND_PICKED = [
    "x * sigmoid(beta * x)",
    "mix(beta * x, sinc(x)) / cosh(x) + beta",  # three betas: the rows must line up with the searched module's
    "gauss_diff(x + beta, cos(x))",
    "max(x, beta)",
    "sqrt(x) - log_abs(x)",
    "laplace_diff(atan(x)**2, -x) * min0(x)",
    "relu(x)",
]
# every operator of the table at least once: each unary alone, each binary over sin(x) and beta * x
EVERY_OP = [Expression(apply(op, X)).text for op in UNARY] + \
           [Expression(apply(op, apply("sin", X), apply("scale", X))).text for op in BINARY]
EXPRESSIONS = list(dict.fromkeys(HAND_PICKED + EVERY_OP))

CHILD = textwrap.dedent("""
    import importlib.util, sys
    for name in ("search", "controller", "evaluator"):  # the exported files must not need actsearch
        sys.modules[name] = None
    import torch
    cases = torch.load(sys.argv[1])
    results = []
    for case in cases:
        spec = importlib.util.spec_from_file_location(f"act{len(results)}", case["path"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        act = module.SearchedActivation()  # lazy: betas sized by the state_dict, then by the input
        if case["state"]:
            act.load_state_dict(case["state"])
        act = act.to(case["device"])
        outs = []
        for x, weight in case["inputs"]:
            x = x.clone().requires_grad_(True)
            y = act(x)
            params = [x] + ([act.beta] if act.beta is not None else [])
            grads = torch.autograd.grad((y * weight).sum(), params, allow_unused=True)
            outs.append([y.detach()] + [None if g is None else g.detach() for g in grads])
        results.append(outs)
    torch.save(results, sys.argv[2])
""")


def _forward(act, x, weight):
    x = x.clone().requires_grad_(True)
    y = act(x)
    params = [x] + ([act.beta] if act.beta is not None else [])
    grads = torch.autograd.grad((y * weight).sum(), params, allow_unused=True)
    return [y.detach()] + [None if g is None else g.detach() for g in grads]


def test_exported_files_match_the_searched_module_in_a_fresh_interpreter(tmp_path):
    gen = torch.Generator().manual_seed(0)
    cases, expected = [], []
    for i, text in enumerate(EXPRESSIONS):
        expr = Expression.parse(text)
        path = write_export(tmp_path / f"act_{i}.py", expr, {"run": "runs/test", "rank": i + 1})
        reference = activation_module(expr, channels=CHANNELS, kernel="eager").to(DEVICE)  # the exported code
        state = {}
        if expr.n_betas:
            # non-default, different betas per row and channel, so a swapped row or channel shows
            state = {"beta": 0.4 + torch.rand(expr.n_betas, CHANNELS, generator=gen)}
            reference.load_state_dict(state)
        inputs = []
        for shape in [(7, CHANNELS), (2, CHANNELS, 3, 4)]:
            x = (3 * torch.randn(shape, generator=gen)).to(DEVICE)
            inputs.append((x, torch.randn(shape, generator=gen).to(DEVICE)))
        cases.append({"path": str(path), "state": state, "device": DEVICE, "inputs": inputs})
        expected.append([_forward(reference, x, w) for x, w in inputs])
    torch.save(cases, tmp_path / "cases.pt")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cases.pt"), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = torch.load(tmp_path / "out.pt")
    for text, want_case, got_case in zip(EXPRESSIONS, expected, got):
        for want, have in zip(want_case, got_case):  # per input shape: output, d/dx, d/dbeta
            assert len(want) == len(have), text
            for w, h in zip(want, have):
                assert (w is None) == (h is None), text
                if w is not None:
                    torch.testing.assert_close(h, w, **TOL, msg=lambda m: f"{text}: {m}")


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exported_file_imports_only_torch_and_math():
    for text in EXPRESSIONS:
        tree = ast.parse(export_source(text, {}))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module.split(".")[0])
        assert imported <= {"torch", "math"}, (text, imported)


def test_every_operator_exports_as_a_module_torch_jit_script_compiles(tmp_path):
    """torch.jit.script failed on every function with sqrt, log_abs or a division ("python value of type 'float'
    cannot be used as a value": the file's EPS global)."""
    import warnings

    for i, text in enumerate(EVERY_OP):
        module = _load(write_export(tmp_path / f"op{i}.py", Expression.parse(text), {}))
        act = module.SearchedActivation(channels=CHANNELS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, not gone
            scripted = torch.jit.script(act)
        x = torch.randn(3, CHANNELS, 4, dtype=torch.float64) * 3
        torch.testing.assert_close(scripted(x), act(x), equal_nan=True, rtol=0, atol=0)


def test_default_module_sizes_betas_from_the_first_input(tmp_path):
    expr = Expression.parse("x * sigmoid(beta * x) + beta")
    module = _load(write_export(tmp_path / "swishish.py", expr, {}))
    act = module.SearchedActivation()
    x = torch.randn(4, 6, 2, 2)
    torch.testing.assert_close(act(x), activation_module(expr)(x))
    assert act.beta.shape == (2, 6) and bool((act.beta == 1).all())
    assert module.SearchedActivation(channels=3).beta.shape == (2, 3)
    assert module.FORMULA == expr.text and "channels=6" in repr(act)


@pytest.mark.parametrize("kernel", ["eager", "native"])
def test_exported_and_searched_modules_keep_the_shape_of_a_vector_and_a_scalar(tmp_path, kernel):
    """A 1-D input (one channel) and a 0-D one come back in their own shape, as ReLU's do: the generated code
    broadcast a beta of shape (1, 1) against x and returned (1, N) for a vector."""
    expr = Expression.parse("sigmul(asinh(x), beta * x)")
    module = _load(write_export(tmp_path / "vector.py", expr, {}))
    for x in (torch.linspace(-3, 3, 7), torch.tensor(0.5)):
        want = activation_module(expr, kernel=kernel)(x)
        have = module.SearchedActivation()(x)
        assert want.shape == have.shape == x.shape
        torch.testing.assert_close(have, want)
        torch.testing.assert_close(have, expr(x[None])[0] if x.dim() == 0 else expr(x))


@pytest.mark.parametrize("name", ["op_sin", "torch", "nn", "math", "activation", "_init_betas", "isinstance", "N_BETAS"])
def test_a_class_name_the_file_itself_uses_is_refused(tmp_path, name):
    """``--class-name op_sin`` (or torch, nn, math, activation, ...) wrote a file whose class replaced a name the file
    uses, and it failed when used (``mul(): argument 'input' must be Tensor, not op_sin``)."""
    with pytest.raises(UserError, match=f"class name '{name}' is a name the exported file itself uses"):
        write_export(tmp_path / "act.py", "sinc(x) * sigmoid(beta * sin(x))", {}, class_name=name)  # sinc: math.pi
    assert not (tmp_path / "act.py").exists()
    module = _load(write_export(tmp_path / "act.py", "sinc(x) * sigmoid(beta * sin(x))", {}, class_name="Sinc"))
    assert module.Sinc(channels=2)(torch.ones(3, 2)).shape == (3, 2)


@pytest.mark.parametrize("kernel", ["eager", "native"])
def test_a_lazy_module_loads_trained_betas_before_its_first_forward_as_the_exported_one_does(tmp_path, kernel):
    """``activation_module(expr)`` (betas sized by the first input) refused a state dict before any forward, while the
    exported module, which docs call interchangeable, loaded it."""
    expr = Expression.parse("x * sigmoid(beta * x) + beta")
    trained = activation_module(expr, 4)
    with torch.no_grad():
        trained.beta.uniform_(0.5, 2.0)
    x = torch.randn(3, 4, 5)
    for fresh in (activation_module(expr, kernel=kernel),
                  _load(write_export(tmp_path / "act.py", expr, {}, force=True)).SearchedActivation()):
        fresh.load_state_dict(trained.state_dict())
        torch.testing.assert_close(fresh(x), trained(x))


def test_the_native_kernel_promotes_x_and_beta_as_the_eager_code_does():
    """A module turned to float64 (``.double()``) returned float64 from eager code and float32 from the native kernel
    for a float32 input: native cast the betas to x's type."""
    expr = Expression.parse("x * sigmoid(beta * x)")
    x = torch.randn(2, 4, 3)
    for module_type, x_type in ((torch.float64, torch.float32), (torch.float32, torch.float64)):
        outs = [activation_module(expr, 4, kernel=k).to(module_type)(x.to(x_type)) for k in ("eager", "native")]
        assert outs[0].dtype == outs[1].dtype == torch.float64
        torch.testing.assert_close(outs[1], outs[0])


def test_docstring_carries_formula_and_provenance(tmp_path):
    significance = [{"candidate": "x * sigmoid(beta * x)", "baseline": "relu", "verdict": "better", "mean_diff": 0.0042,
                     "ci_low": 0.001, "ci_high": 0.007, "wilcoxon_p_holm": 0.012, "sign_p": 0.002, "n": 10,
                     "wins": 9, "ties": 0, "losses": 1}]
    run = 'runs/"odd" \\ name """ here'
    module = _load(write_export(tmp_path / "act.py", "x * sigmoid(beta * x)",
                                {"run": run, "rank": 1, "reward": 0.9134, "significance": significance}))
    doc = module.__doc__
    assert "f(x) = x * sigmoid(beta * x)" in doc
    assert f"run: {run}" in doc  # quotes and backslashes read back as written
    assert "reward: 0.9134" in doc
    assert "vs relu: better" in doc and "95% CI [+0.001, +0.007]" in doc and "w/t/l 9/0/1" in doc
    assert "beta[0]: scale" in doc


def test_write_export_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "act.py"
    write_export(path, "relu(x)", {})
    with pytest.raises(UserError, match="already exists"):
        write_export(path, "x * sigmoid(beta * x)", {})
    assert "relu(x)" in path.read_text()
    write_export(path, "x * sigmoid(beta * x)", {}, force=True)
    assert "FORMULA = 'x * sigmoid(beta * x)'" in path.read_text()
    with pytest.raises(UserError, match="is a directory"):
        write_export(tmp_path, "relu(x)", {})
    with pytest.raises(UserError, match="no such directory"):
        write_export(tmp_path / "missing" / "act.py", "relu(x)", {})
    with pytest.raises(UserError, match="not a Python identifier"):
        export_source("relu(x)", {}, class_name="my-act")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["act.py"]  # no temporary files left behind
