"""`actsearch expr` and `actsearch space` as a user runs them."""
import json
import subprocess
import sys

import pytest
from conftest import run_cli


def test_expr_prints_canonical_text_fingerprint_verdict_and_tokens(capsys):
    code, out, _ = run_cli(capsys, "expr", "sigmoid(beta*x)*x")
    assert code == 0
    assert "expression   sigmoid(beta * x) * x" in out
    assert "screen       ok" in out
    assert "tokens       x x scale x sigmul" in out
    code, out, _ = run_cli(capsys, "expr", "atan(x)**2 - x", "--json")
    info = json.loads(out)
    assert info["tokens"] == ["x", "x", "atan", "atan", "mul", "u0", "x", "x", "x", "sub"]
    assert info["core_units"] == 2 and info["screen"] == "ok" and len(info["fingerprint"]) == 16


def test_expr_reports_screen_reason(capsys):
    code, out, _ = run_cli(capsys, "expr", "x - x")
    assert code == 0 and "rejected (constant output)" in out


@pytest.mark.parametrize("text, fragment", [
    ("", "empty expression"), ("swoosh(x)", "unknown operator 'swoosh'"), ("max(x, x, x", "expected ')'"), ("max(x, x, x)", "max takes 2"),
    ("x +* x", "unexpected '*' at column 4"),
])
def test_expr_bad_input_one_line_exit_2(capsys, text, fragment):
    code, out, err = run_cli(capsys, "expr", text)
    assert code == 2 and out == ""
    assert fragment in err and err.count("\n") == 1


def test_space_counts_the_one_unit_space(capsys):
    code, out, _ = run_cli(capsys, "space", "--json")
    info = json.loads(out)
    assert code == 0 and info["token_strings"] == 6250 and info["exact"]
    # the README's figures; they move when the operator table, the fingerprint or the screen changes
    assert info["distinct_functions"] == 4077
    assert info["passing_screen"] == 3993


def test_space_subsets_and_large_spaces(capsys):
    code, out, _ = run_cli(capsys, "space", "--unary", "x", "sin", "relu", "--binary", "add", "max", "--json")
    info = json.loads(out)
    assert info["token_strings"] == 3 * 3 * 2 and info["distinct_functions"] <= 18
    code, out, _ = run_cli(capsys, "space", "--core-units", "2", "--sample", "300")
    assert code == 0 and "156,250,000" in out and "random sample of 300" in out


def test_space_bad_operator_exit_2(capsys):
    code, out, err = run_cli(capsys, "space", "--unary", "x", "bogus")
    assert code == 2 and "unknown unary operator 'bogus'" in err


def test_an_expression_starting_with_minus_gets_the_double_dash_hint():
    proc = subprocess.run([sys.executable, "-m", "search.cli", "expr", "-(-x)"], capture_output=True, text=True)
    assert proc.returncode == 2 and "put -- before it" in proc.stderr and "-- '-(-x)'" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "search.cli", "expr", "--", "-(-x)"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--x" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "search.cli", "expr", "x", "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--bogus" in proc.stderr and "put --" not in proc.stderr
    # the value of an option: -- does not help there (train has no positional argument), --activation=... does
    proc = subprocess.run([sys.executable, "-m", "search.cli", "train", "--steps", "1", "--activation", "-x*sigmoid(x)"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "write --activation='-x*sigmoid(x)'" in proc.stderr


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "search.cli", "expr", "max(x, 0)"], capture_output=True, text=True)
    assert proc.returncode == 0 and "relu(x)" in proc.stdout


def test_version_names_the_package_and_the_checkout(capsys):
    from importlib.metadata import version

    from search.loop.rundir import git_commit

    code, out, _ = run_cli(capsys, "--version")
    commit, _ = git_commit()
    assert code == 0 and out.startswith(f"actsearch {version('actsearch')}")
    assert commit is None or f"commit {commit[:12]}" in out
