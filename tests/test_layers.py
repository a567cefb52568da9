"""The import graph, checked two ways: layers without cycles.

    search.language      the operator table, expressions, kernels, the core-unit space, errors: no project imports
    controller, evaluator  each imports only itself and the language (not each other)
    search.loop          config, store, run directory, child pool, driver: imports the layers below
    search.analysis      statistics, significance, tables, plots, report, export
    search.cli           the command line, on top

1. Read from the source with ``ast``: every import statement counts, also those inside functions (they are edges all
   the same), and so does every ``importlib.import_module(...)`` / ``__import__(...)`` call naming a project module;
   such a call with a computed name is allowed only where ``DYNAMIC_IMPORTS`` says why.
2. Observed: each layer's modules are imported in a fresh interpreter and ``sys.modules`` must then hold no module of
   a layer it may not import (and no Ray below the loop), however the import came about.
"""
import ast
import json
import subprocess
import sys
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
# Modules that may import a module whose name is computed, and why; any other computed import fails the test.
DYNAMIC_IMPORTS = {"evaluator.user": "loads the user's child module named in child.task"}
IMPORT_FUNCTIONS = ("import_module", "__import__")  # importlib.import_module, __import__, importlib.__import__


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def _absolute(name: str, level: int, package: str) -> str:
    """``name`` imported with ``level`` leading dots from inside ``package``, as an absolute module name."""
    if not level:
        return name
    parent = package.split(".")[: len(package.split(".")) - level + 1]
    return ".".join(parent + ([name] if name else []))


def _called_import(node: ast.Call, package: str) -> str | None:
    """The module a call ``import_module("x")`` / ``__import__("x")`` imports: its name, "" when the name is computed,
    None when the call is no import."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called not in IMPORT_FUNCTIONS:
        return None
    arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return ""
    name = arg.value
    if name.startswith("."):  # import_module(".store", package="search.loop")
        anchor = next((k.value for k in node.keywords if k.arg == "package"),
                      node.args[1] if len(node.args) > 1 else None)
        if not (isinstance(anchor, ast.Constant) and isinstance(anchor.value, str)):
            return ""
        return _absolute(name.lstrip("."), len(name) - len(name.lstrip(".")), anchor.value)
    return name


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``: imports for annotations, never run."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for child in node.body for n in ast.walk(child)}
    return out


def imports(path: Path, modules: dict[str, Path], module: str | None = None, typing: bool = True) -> set[str]:
    """Project modules (and ``ray``) that ``path`` (the module ``module``, by default read from the path) imports
    anywhere in its body, by statement or by an import call with a literal name; ``"<computed>"`` when it calls an
    import function with a computed name. typing=False leaves out imports under ``if TYPE_CHECKING:``."""
    out = set()
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skip = set() if typing else _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or "", node.level, package)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call):
            called = _called_import(node, package)
            if called == "":
                out.add("<computed>")
            elif called:
                names = [called]
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
# the edges Python follows when it runs: a cycle through an annotation-only import is none
RUNTIME_GRAPH = {m: imports(p, project_modules(), typing=False) - {m} for m, p in project_modules().items()}


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
    wrong = sorted(m for m in GRAPH[module] - {"ray", "search", "<computed>"} if layer(m) not in allowed)
    assert not wrong, f"{module} ({own}) imports {wrong}; it may import only {allowed}"
    if own in NO_RAY:
        assert "ray" not in GRAPH[module], f"{module} imports ray; {own} must run where Ray is not installed"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_module_imports_by_a_computed_name_unless_it_must(module):
    if "<computed>" in GRAPH[module]:
        assert module in DYNAMIC_IMPORTS, (f"{module} calls import_module / __import__ with a computed name: the layer "
                                           f"check cannot see what it imports; import the module by name")


def test_the_ast_walk_sees_import_calls(tmp_path):
    """The walk above is what catches an import reaching up from inside a function (never run at import time)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\n\n\ndef later(name):\n"
                     "    importlib.import_module('search.loop.store')\n"
                     "    __import__('controller.base')\n"
                     "    importlib.import_module('.rundir', package='search.loop')\n"
                     "    importlib.import_module(name)\n")
    found = imports(probe, project_modules(), "search.language.probe")
    assert found == {"search.loop.store", "controller.base", "search.loop.rundir", "<computed>"}


def test_no_import_cycles():
    """No cycle among the imports that run (those under ``if TYPE_CHECKING:`` still obey the layers above)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(RUNTIME_GRAPH.get(module, ())):
            if target not in RUNTIME_GRAPH:
                continue
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(RUNTIME_GRAPH):
        if module not in state:
            visit(module)


# ---------------------------------------------------------------- what an import really loads

LOADED = ("import importlib, json, sys\n"
          "sys.path[1:1] = sys.argv[2:]\n"
          "for name in json.loads(sys.argv[1]):\n"
          "    importlib.import_module(name)\n"
          "print(json.dumps(sorted(sys.modules)))\n")


def loaded_by(modules: list[str], *path: str) -> set[str]:
    """Every module in ``sys.modules`` after a fresh interpreter imported ``modules`` (from the repository root, with
    ``path`` also searched)."""
    proc = subprocess.run([sys.executable, "-c", LOADED, json.dumps(modules), *path], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize("own", sorted(RULES))
def test_importing_a_layer_loads_nothing_above_it(own):
    """Import every module of ``own`` in a fresh interpreter: whatever the source says or hides, ``sys.modules`` may
    then hold only ``own``, the layers it may import and the ``search`` package itself (and Ray not below the loop)."""
    mine = sorted(m for m in GRAPH if layer(m) == own and not m.endswith("__main__"))  # __main__ runs the command
    loaded = loaded_by(mine)
    allowed = (own, *RULES[own])
    wrong = sorted(m for m in loaded if m.split(".")[0] in PACKAGES and m != "search" and layer(m) not in allowed)
    assert not wrong, f"importing {own} loads {wrong}; it may load only {allowed}"
    if own in NO_RAY:
        assert not {"ray"} & loaded, f"importing {own} loads ray; it must run where Ray is not installed"


def test_the_subprocess_check_sees_a_module_level_import(tmp_path):
    """``loaded_by`` sees what an import does at run time, e.g. an ``import_module`` at module level."""
    (tmp_path / "probe_layer.py").write_text("import importlib\nimportlib.import_module('search.loop.store')\n")
    assert "search.loop.store" in loaded_by(["probe_layer"], str(tmp_path))


def test_training_a_child_needs_no_ray(tmp_path):
    """A GPU machine without Ray runs `actsearch train` (and so the benchmarks): Ray is made unimportable here."""
    script = ("import sys; sys.modules['ray'] = None\n"
              "from search.cli import main\n"
              f"sys.exit(main(['train', '--activation', 'relu', '--steps', '5', '--train-size', '300', '--val-size', "
              f"'100', '--data-dir', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stderr[-2000:]
