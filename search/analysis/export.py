"""Export a candidate as a standalone Python file that needs only torch.

The file holds, in order: a docstring (formula, betas, provenance, usage), the operator definitions the function uses
(``Op.definition`` from the operator table, verbatim), the kernel's generated ``activation(x, beta)`` (the same source
``search.language.kernel`` runs, so beta numbering and broadcasting cannot drift), and an ``nn.Module`` with the semantics of
``search.language.kernel.Activation``: ``beta`` of shape (n_betas, C) initialised to 1, broadcast over dim 1, sized from the
first input when ``channels`` is None. Its ``state_dict`` is interchangeable with the searched module's.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import json
import keyword
import os
import re
from pathlib import Path
from typing import Any, Mapping

from search.language.errors import UserError
from search.language.expression import Expression
from search.language.files import atomic_write
from search.language.kernel import _init_betas, _load_lazy_beta, _materialize_beta, kernel
from search.language.ops import EPS, OPS_BY_NAME

OPS_BY_FN_NAME = {op.fn_name: op for op in OPS_BY_NAME.values()}

DEFAULT_CLASS_NAME = "SearchedActivation"

_MODULE_TEMPLATE = '''
class {class_name}(nn.Module):
    """``f(x) = {text}`` with one trainable per-channel beta per occurrence ({n_betas} here).

    channels: size of the input's dim 1, or None to size the betas from the first input (run one forward, or load a
    state_dict, before building the optimizer). ``beta`` has shape (n_betas, channels) and starts at 1.
    """

    n_betas = N_BETAS

    def __init__(self, channels=None):
        super().__init__()
        _init_betas(self, self.n_betas, channels)

    def forward(self, x):
        beta = self.beta if self.beta is not None else x.new_ones(1, 1)
        return activation(x, beta)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _load_lazy_beta(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self):
        lazy = self.beta is None or isinstance(self.beta, nn.UninitializedParameter)
        return f"{{FORMULA!r}}, n_betas={{self.n_betas}}, channels={{None if lazy else self.beta.shape[1]}}"


'''.lstrip("\n") + "".join("\n\n" + inspect.getsource(fn) for fn in (_init_betas, _materialize_beta,
                                                                                 _load_lazy_beta))


def _doc_safe(text: str) -> str:
    """Text that can sit inside a triple-quoted docstring and reads back as written (quotes, backslashes, controls)."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n" or ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii").replace("\\", "\\\\"))
    return "".join(out)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str):
        return v
    return json.dumps(v, default=str)


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.4g}"


def _significance_lines(rows: list) -> list[str]:
    """One line per comparison (``search.analysis.stats.Comparison.to_dict()`` records)."""
    lines = []
    for r in rows:
        if not isinstance(r, Mapping) or "baseline" not in r:
            lines.append(_value(r))
            continue
        line = f"vs {r['baseline']}: {r.get('verdict', '?')}"
        details = []
        if "mean_diff" in r:
            unit = f" in {r['metric']}, lower is better" if r.get("lower_is_better") else ""
            details.append(f"mean diff {_signed(r['mean_diff'])}{unit}")
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            details.append(f"95% CI [{_signed(r['ci_low'])}, {_signed(r['ci_high'])}]")
        if "wilcoxon_p_holm" in r:
            details.append(f"Wilcoxon p (Holm) {r['wilcoxon_p_holm']:.3g}")
        if "sign_p" in r:
            details.append(f"sign test p {r['sign_p']:.3g}")
        if "n" in r:
            details.append(f"{r['n']} seeds, w/t/l {r.get('wins', '?')}/{r.get('ties', '?')}/{r.get('losses', '?')}")
        lines.append(line + (f" ({'; '.join(details)})" if details else ""))
    return lines


def _provenance_lines(provenance: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, value in provenance.items():
        if key == "significance" and isinstance(value, list):
            lines.append("significance:" + ("" if value else " none"))
            lines.extend("    " + line for line in _significance_lines(value))
        elif isinstance(value, str) and "\n" in value:
            lines.append(f"{key}:")
            lines.extend("    " + line for line in value.splitlines())
        else:
            lines.append(f"{key}: {_value(value)}")
    return lines


def export_source(expr: Expression | str, provenance: Mapping[str, Any], *,
                  class_name: str = DEFAULT_CLASS_NAME) -> str:
    """Python source of a standalone module defining ``class_name`` (an ``nn.Module``) for ``expr``.

    provenance: what produced the function, printed in the docstring in the given order, e.g. ``{"run": path,
    "rank": 1, "reward": 0.91, "evaluations": 3, "significance": [Comparison.to_dict(), ...]}``.
    Returns the file text; it imports only torch (and math when the function needs it).
    """
    expr = Expression.parse(expr) if isinstance(expr, str) else expr
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        what = "a Python keyword" if keyword.iskeyword(class_name) else "not a Python identifier"
        raise UserError(f"class name {class_name!r} is {what}")
    body = kernel(expr, "eager").source.rstrip()
    # the operators in the order the generated code calls them, and which beta row each beta-carrying one reads
    calls = re.findall(r"= (op_\w+)\((.*)\)$", body, flags=re.M)
    ops = list(dict.fromkeys(OPS_BY_FN_NAME[name] for name, _ in calls))
    beta_rows = [(int(row), OPS_BY_FN_NAME[name]) for name, args in calls for row in re.findall(r"b\[(\d+)\]", args)]
    definitions = "\n\n\n".join(op.definition.rstrip() for op in ops)
    uses_math = any("math." in op.source for op in ops)
    if beta_rows:
        betas = [f"``beta`` has shape ({expr.n_betas}, C), one row per beta occurrence, initialised to 1:"]
        betas += [f"    beta[{row}]: {op.name} ``{op.math}``" for row, op in sorted(beta_rows, key=lambda r: r[0])]
    else:
        betas = ["none (the module has no parameters)."]
    doc = [
        f"{class_name}: the activation function ``{expr.text}``, exported by actsearch.",
        "",
        "Formula (actsearch syntax; the operators are defined below):",
        "",
        f"    f(x) = {expr.text}",
        "",
        "Betas: " + betas[0],
        *betas[1:],
        "",
        "Provenance:",
        *("    " + line for line in (_provenance_lines(provenance) or ["(none given)"])),
        "",
        "Usage:",
        "",
        f"    act = {class_name}()             # betas sized from the first input's dim 1",
        f"    act = {class_name}(channels=64)  # or sized up front",
        "    act.load_state_dict(searched_module.state_dict())  # the searched module's betas load as they are",
        "",
        "Needs only torch.",
    ]
    header = '"""' + _doc_safe("\n".join(doc)) + '\n"""\n'
    imports = ("import math\n\n" if uses_math else "") + "import torch\nfrom torch import nn\n"
    constants = f"FORMULA = {expr.text!r}\nN_BETAS = {expr.n_betas}\n"
    # EPS written as its value: torch.jit.script cannot read a module's float global
    definitions, body = (re.sub(r"\bEPS\b", repr(EPS), text) for text in (definitions, body))
    module = _MODULE_TEMPLATE.format(class_name=class_name, text=_doc_safe(expr.text), n_betas=expr.n_betas)
    source = (f"{header}{imports}\n{constants}\n\n# ---- the operators, from actsearch's operator table\n\n"
              f"{definitions}\n\n\n# ---- the function: beta (n_betas, C) broadcast over dim 1\n\n"
              f"{body}\n\n\n{module}")
    compile(source, f"<export {expr.text}>", "exec")  # a generated file that does not even parse is our bug
    if class_name in _global_names(source, but=class_name):
        raise UserError(f"class name {class_name!r} is a name the exported file itself uses; choose another, such "
                        f"as {DEFAULT_CLASS_NAME}")
    return source


def _global_names(source: str, but: str) -> set[str]:
    """The module-level names ``source`` binds (imports, functions, classes, constants; not the class ``but``) and
    the builtins it reads: a class of the same name would replace one of them."""
    tree = ast.parse(source)
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) or (isinstance(node, ast.ClassDef) and node.name != but):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names | {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and hasattr(builtins, n.id)}


def write_export(path: str | os.PathLike, expr: Expression | str, provenance: Mapping[str, Any], *,
                 force: bool = False, class_name: str = DEFAULT_CLASS_NAME) -> Path:
    """Write ``export_source(expr, provenance)`` to ``path``; an existing file is replaced only with ``force``.

    Returns the path written. Raises ``UserError`` for an existing file (without force), a directory, or a missing
    parent folder.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name such as my_activation.py")
    if path.exists() and not force:
        raise UserError(f"{path}: already exists (use --force to overwrite)")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such directory")
    source = export_source(expr, provenance, class_name=class_name)
    atomic_write(path, source)  # never leaves a half-written file under the user's name
    return path
