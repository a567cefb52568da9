"""The import graph, read from the source with ``ast``: layers without cycles.

    search.language      the operator table, expressions, kernels, the core-unit space, errors: no project imports
    controller, evaluator  each imports only itself and the language (not each other)
    search.loop          config, store, run directory, child pool, driver: imports the layers below
    search.analysis      statistics, significance, tables, plots, report, export
    search.cli           the command line, on top

Every import counts, also those inside functions (they are edges all the same).
"""
import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGES = ("search", "controller", "evaluator")
# (layer, may import these layers besides itself)
RULES = {
    "search.language": (),
    "controller": ("search.language",),
    "evaluator": ("search.language",),
    "search.loop": ("search.language", "controller", "evaluator"),
    "search.analysis": ("search.language", "controller", "evaluator", "search.loop"),
    "search.cli": ("search.language", "controller", "evaluator", "search.loop", "search.analysis"),
}
NO_RAY = ("search.language", "controller", "evaluator")  # these run where Ray is not installed (a bare GPU machine)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules (and ``ray``) that ``path`` imports anywhere in its body."""
    out = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name == "ray" or name.startswith("ray."):
                out.add("ray")
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def layer(module: str) -> str | None:
    return next((l for l in RULES if module == l or module.startswith(l + ".")), None)


GRAPH = {m: imports(p, project_modules()) - {m} for m, p in project_modules().items()}


def test_every_module_belongs_to_a_layer():
    assert [m for m in GRAPH if layer(m) is None and m != "search"] == []


def test_the_search_package_itself_imports_only_the_language():
    # importing search.language must not drag in the loop, Ray or the CLI through search/__init__.py
    assert all(layer(m) == "search.language" for m in GRAPH["search"]), GRAPH["search"]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_own_layer_and_those_below(module):
    own = layer(module)
    if own is None:
        return
    allowed = (own, *RULES[own])
    wrong = sorted(m for m in GRAPH[module] - {"ray", "search"} if layer(m) not in allowed)
    assert not wrong, f"{module} ({own}) imports {wrong}; it may import only {allowed}"
    if own in NO_RAY:
        assert "ray" not in GRAPH[module], f"{module} imports ray; {own} must run where Ray is not installed"


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if target not in GRAPH:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)


def test_training_a_child_needs_no_ray(tmp_path):
    """A GPU machine without Ray runs `actsearch train` (and so the benchmarks): Ray is made unimportable here."""
    import subprocess
    import sys

    script = ("import sys; sys.modules['ray'] = None\n"
              "from search.cli import main\n"
              f"sys.exit(main(['train', '--activation', 'relu', '--steps', '5', '--train-size', '300', '--val-size', "
              f"'100', '--data-dir', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-2000:]
