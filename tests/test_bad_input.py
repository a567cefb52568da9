"""Bad and hostile input, as a new user types it: every case exits 2 with one line on stderr (at most
``search.cli.MAX_ERROR_LINE`` characters) naming the field or file, no traceback, and a run directory it touched keeps its store and config byte for byte.

The runs here are made without Ray: the real driver, fed by a pool that trains synthetic children in this process.
"""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from search.cli import MAX_ERROR_LINE, main
from search.loop.config import load_config
from search.loop.rundir import CHECKPOINT_DIR, CHECKPOINT_FILE, CONFIG_FILE, LOCK_FILE, create_run
from search.loop.store import STORE_FILE

CONFIG = {"seed": 0, "space": {"core_units": 1}, "controller": {"kind": "ppo", "batch_size": 4},
          "child": {"task": "synthetic", "noise": 0.01}, "budget": {"children": 12},
          "resources": {"cpus_per_child": 1}}
DEEP = "sin(" * 200 + "x" + ")" * 200
LONG = " + ".join(["x"] * 500)
HUGE = "9" * 400
UNWRITABLE = "/sys"  # a folder no process may create files in, root included


def make_run(folder: Path, name: str = "run", **changes) -> Path:
    """A finished 12-child synthetic run (PPO, with checkpoints) in ``folder/name``."""
    from conftest import finish_in_process

    raw = {**CONFIG, **changes}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    run_dir = folder / name
    finish_in_process(run_dir, load_config(folder / f"{name}.yaml"), capacity=2)
    return run_dir


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    make_run(folder, "other", seed=7)
    make_run(folder)
    return folder


def snapshot(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in (STORE_FILE, CONFIG_FILE)
            if (run / name).is_file()}


# ---------------------------------------------------------------- how a case changes the run before the command

def edit_config(section: str, key: str | None, value):
    def change(run: Path, tmp: Path) -> None:
        raw = yaml.safe_load((run / CONFIG_FILE).read_text())
        if key is None:
            raw[section] = value
        else:
            raw[section][key] = value
        (run / CONFIG_FILE).write_text(yaml.safe_dump(raw))
    return change


def write_store(data: bytes | None = None, keep: int | None = None):
    def change(run: Path, tmp: Path) -> None:
        path = run / STORE_FILE
        for extra in (run / (STORE_FILE + "-wal"), run / (STORE_FILE + "-shm")):
            extra.unlink(missing_ok=True)
        path.write_bytes(path.read_bytes()[:keep] if keep is not None else data)
    return change


def write_checkpoint(data: bytes | None = None, keep: int | None = None):
    def change(run: Path, tmp: Path) -> None:
        path = run / CHECKPOINT_DIR / CHECKPOINT_FILE
        path.write_bytes(path.read_bytes()[:keep] if keep is not None else data)
    return change


def copy_store_of_other_run(run: Path, tmp: Path) -> None:
    shutil.copy(tmp / "other" / STORE_FILE, run / STORE_FILE)


def made_with_old_fingerprints(run: Path, tmp: Path) -> None:
    from search.loop.store import Store

    with Store.open(run) as store:
        store.set_meta("fingerprint_version", 1)


def lock_is_a_folder(run: Path, tmp: Path) -> None:
    (run / LOCK_FILE).unlink(missing_ok=True)
    (run / LOCK_FILE).mkdir()


def write_file(name: str, text: str):
    def change(run: Path, tmp: Path) -> None:
        (tmp / name).write_text(textwrap.dedent(text))
    return change


ALIAS_BOMB = """\
    a: &a [x, x, x, x, x, x, x, x, x]
    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    seed: [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""
BIG_VALUE = """\
    child:
      task: [&c [&b [&a [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx,
                         xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx,
                         xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx,
                         xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx, xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx],
                     *a, *a, *a, *a, *a, *a, *a], *b, *b, *b, *b, *b, *b, *b], *c, *c, *c, *c, *c, *c, *c]
"""


# ---------------------------------------------------------------- the cases
# (id, argv with RUN / TMP placeholders, a change made first or None, words the error line must contain)

CASES = [
    # 1. a resumed run's search definition cannot change, and a copied store is caught
    ("edit-seed", ["resume", "RUN", "--set", "budget.children=20"], edit_config("seed", None, 5), ["seed", "was 0"]),
    ("edit-core-units", ["resume", "RUN"], edit_config("space", "core_units", 2), ["space.core_units"]),
    ("edit-unary", ["resume", "RUN"], edit_config("space", "unary", ["x", "relu"]), ["space.unary"]),
    ("edit-binary", ["resume", "RUN"], edit_config("space", "binary", ["add"]), ["space.binary"]),
    ("edit-controller-kind", ["resume", "RUN"], edit_config("controller", "kind", "random"), ["controller.kind"]),
    ("edit-controller-lr", ["resume", "RUN"], edit_config("controller", "lr", 0.5), ["controller.lr"]),
    ("edit-batch", ["resume", "RUN"], edit_config("controller", "batch_size", 8), ["controller.batch_size"]),
    ("edit-target", ["resume", "RUN"], edit_config("child", "target", "relu(x)"), ["child.target"]),
    ("edit-noise", ["resume", "RUN"], edit_config("child", "noise", 0.5), ["child.noise"]),
    ("edit-steps", ["resume", "RUN"], edit_config("child", "steps", 9), ["child.steps"]),
    ("edit-rewards-failed", ["resume", "RUN"], edit_config("rewards", "failed", 0.5), ["rewards.failed"]),
    ("edit-rewards-screened", ["resume", "RUN"], edit_config("rewards", "screened", -1.0), ["rewards.screened"]),
    ("edit-reject-linear", ["resume", "RUN"], edit_config("rewards", "reject_linear", False),
     ["rewards.reject_linear"]),
    ("copied-store", ["resume", "RUN"], copy_store_of_other_run, ["seed", "config.yaml"]),
    ("old-fingerprints", ["resume", "RUN", "--set", "budget.children=20"], made_with_old_fingerprints,
     ["fingerprints of version 1"]),
    ("resume-set-search", ["resume", "RUN", "--set", "child.noise=0.3"], None, ["child.noise", "resumed run"]),
    ("run-resume-other-search", ["run", "TMP/run.yaml", "--set", "seed=3", "--resume", "--name", "run",
                                 "--results", "TMP"], None, ["seed"]),
    # 2. a failed resume keeps its --set changes out of config.yaml
    ("resume-set-broken-checkpoint", ["resume", "RUN", "--set", "budget.children=50"], write_checkpoint(b"garbage"),
     ["controller.pt"]),
    ("resume-set-unreachable", ["resume", "RUN", "--set", "budget.children=50", "--set",
                                "resources.address=127.0.0.1:1"], None, ["resources.address"]),
    # 3. tiny configs that expand into huge ones
    ("alias-bomb", ["run", "TMP/bomb.yaml", "--results", "TMP/out"], write_file("bomb.yaml", ALIAS_BOMB),
     ["bomb.yaml", "aliases"]),
    ("big-value", ["run", "TMP/big.yaml", "--results", "TMP/out"], write_file("big.yaml", BIG_VALUE), ["child.task"]),
    ("alias-bomb-set", ["run", "TMP/run.yaml", "--set", "seed=[&a [1,1,1,1,1,1,1,1,1,1,1], [*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,"
                        "*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]]",
                        "--results", "TMP/out"], None, ["seed"]),
    ("duplicate-key", ["run", "TMP/dup.yaml", "--results", "TMP/out"],
     write_file("dup.yaml", "seed: 1\nbudget: {children: 5}\nseed: 2\n"), ["dup.yaml", "'seed' is given twice"]),
    ("duplicate-field", ["run", "TMP/dup.yaml", "--results", "TMP/out"],
     write_file("dup.yaml", "child:\n  steps: 5\n  steps: 6\n"), ["dup.yaml", "'steps' is given twice"]),
    # a dataset this machine lacks: refused before Ray starts, a run's folder exists or a study is recorded
    ("run-missing-cifar", ["run", "TMP/run.yaml", "--results", "TMP/out", "--set", "child.task=cifar10", "--set",
                           "child.model=resnet20", "--set", "child.data_dir=TMP/nodata"], None,
     ["child.task cifar10", "CIFAR-10 not found", "nodata"]),
    ("significance-missing-cifar", ["significance", "RUN", "--top", "1", "--seeds", "8", "--set", "child.task=cifar10",
                                    "--set", "child.model=resnet20", "--set", "child.data_dir=TMP/nodata"], None,
     ["CIFAR-10 not found", "nodata"]),
    # one function named twice as a baseline (two texts of it): trained twice, counted twice by Holm
    ("significance-baseline-twice",
     ["significance", "RUN", "--seeds", "8", "--baselines", "relu(x),max(x, relu(x))"], None,
     ["--baselines", "'max(x, relu(x))' is 'relu(x)' again"]),
    ("confirm-baseline-twice", ["run", "TMP/run.yaml", "--results", "TMP/out", "--set",
                                'confirm.baselines=[x * sigmoid(x), "sigmul(x, x)"]'], None,
     ["confirm.baselines", "'sigmul(x, x)' is 'x * sigmoid(x)' again"]),
    ("screened-above-accuracy", ["run", "TMP/run.yaml", "--results", "TMP/out", "--set", "rewards.screened=2"], None,
     ["rewards.screened", "above any accuracy"]),
    ("train-size-one", ["train", "--activation", "relu", "--set", "child.train_size=1"], None,
     ["child.train_size", ">= 2 (batch norm"]),
    ("batch-size-one", ["run", "TMP/run.yaml", "--results", "TMP/out", "--set", "child.task=mnist1d", "--set",
                        "child.batch_size=1"], None, ["child.batch_size", ">= 2 (batch norm"]),
    ("table-seeds-nan", ["table", "build", "TMP/run.yaml", "--out", "TMP/t.json", "--seeds", "nan"], None,
     ["--seeds", "from 1 to 100"]),
    # 4. huge numbers
    ("significance-seeds-huge", ["significance", "RUN", "--seeds", "99999999999999999999"], None, ["--seeds"]),
    ("significance-top-huge", ["significance", "RUN", "--top", "9" * 30], None, ["--top"]),
    ("top-k-huge", ["top", "RUN", "-k", "99999999999999999999"], None, ["-k"]),
    ("export-rank-huge", ["export", "RUN", "99999999999999999999999", "-o", "TMP/a.py"], None, ["rank"]),
    ("significance-empty-candidates", ["significance", "RUN", "--candidates", ""], None, ["empty entry"]),
    ("config-int-400-digits", ["run", "TMP/run.yaml", "--set", f"child.steps={HUGE}", "--results", "TMP/out"], None,
     ["child.steps"]),
    ("config-float-400-digits", ["run", "TMP/run.yaml", "--set", f"controller.lr={HUGE}", "--results", "TMP/out"],
     None, ["controller.lr"]),
    ("yaml-int-400-digits", ["run", "TMP/huge.yaml", "--results", "TMP/out"],
     write_file("huge.yaml", f"budget:\n  children: {HUGE}\n"), ["budget.children"]),
    ("seed-10-30", ["run", "TMP/run.yaml", "--set", "seed=1000000000000000000000000000000", "--results", "TMP/out"],
     None, ["seed"]),
    ("seed-2-40", ["run", "TMP/run.yaml", "--set", f"seed={2**40}", "--results", "TMP/out"], None, ["seed"]),
    ("hidden-size-huge", ["run", "TMP/run.yaml", "--set", "controller.hidden_size=100000000", "--results",
                          "TMP/out"], None, ["controller.hidden_size"]),
    ("children-huge", ["run", "TMP/run.yaml", "--set", "budget.children=1000000000000", "--results", "TMP/out"],
     None, ["budget.children"]),
    ("batch-huge", ["run", "TMP/run.yaml", "--set", "child.batch_size=10000000", "--results", "TMP/out"], None,
     ["child.batch_size"]),
    ("calibrate-seeds-huge", ["calibrate", "--activations", "relu", "--seeds", "9" * 25], None, ["--seeds"]),
    ("train-seed-negative", ["train", "--activation", "relu", "--seed", "-1"], None, ["--seed"]),
    # 5. damaged run files
    ("store-truncated-resume", ["resume", "RUN"], write_store(keep=3000), ["store.sqlite"]),
    ("store-truncated-top", ["top", "RUN"], write_store(keep=3000), ["store.sqlite"]),
    ("store-truncated-report", ["report", "RUN", "-o", "TMP/r.html"], write_store(keep=3000), ["store.sqlite"]),
    ("store-random-resume", ["resume", "RUN"], write_store(os.urandom(8192)), ["store.sqlite"]),
    ("store-random-top", ["top", "RUN"], write_store(os.urandom(8192)), ["store.sqlite"]),
    ("store-random-report", ["report", "RUN", "-o", "TMP/r.html"], write_store(os.urandom(8192)), ["store.sqlite"]),
    ("store-empty-resume", ["resume", "RUN"], write_store(b""), ["store.sqlite", "not a run store"]),
    ("store-empty-top", ["top", "RUN"], write_store(b""), ["store.sqlite", "not a run store"]),
    ("checkpoint-garbage", ["resume", "RUN", "--set", "budget.children=20"], write_checkpoint(b"not a checkpoint"),
     ["controller.pt"]),
    ("checkpoint-truncated", ["resume", "RUN", "--set", "budget.children=20"], write_checkpoint(keep=100),
     ["controller.pt"]),
    # 6. deep or long expressions
    ("expr-deep", ["expr", DEEP], None, ["tokens"]),
    ("expr-long-sum", ["expr", LONG], None, ["tokens"]),
    ("expr-deep-parens", ["expr", "(" * 60 + "x" + ")" * 60], None, ["nested more than"]),
    ("expr-many-signs", ["expr", "--", "-" * 80 + "x"], None, ["nested more than"]),
    ("expr-too-long", ["expr", "x" * 5000], None, ["characters"]),
    ("export-deep", ["export", "RUN", DEEP, "-o", "TMP/a.py"], None, ["tokens"]),
    ("significance-candidates-deep", ["significance", "RUN", "--candidates", DEEP, "--baselines", "relu(x)"], None, ["tokens"]),
    # 7. the environment
    ("lock-is-a-folder", ["resume", "RUN", "--set", "budget.children=20"], lock_is_a_folder, ["run.lock"]),
    ("results-is-a-file", ["run", "TMP/run.yaml", "--results", "TMP/file"], write_file("file", "x"), ["--results"]),
    # 8. sizes that would hang
    ("expr-core-units-huge", ["expr", "x * sigmoid(beta * x)", "--core-units", "100000"], None, ["--core-units"]),
    ("space-core-units-huge", ["space", "--core-units", "100000"], None, ["--core-units"]),
    ("config-core-units-huge", ["run", "TMP/run.yaml", "--set", "space.core_units=100000", "--results", "TMP/out"],
     None, ["space.core_units"]),
    # 9. the rest
    ("export-superscript", ["export", "RUN", "\u00b2", "-o", "TMP/a.py"], None, ["unexpected character"]),
    ("export-rank-negative", ["export", "RUN", "-1", "-o", "TMP/a.py"], None, ["rank -1"]),
    ("export-rank-zero", ["export", "RUN", "0", "-o", "TMP/a.py"], None, ["rank 0"]),
    ("config-is-a-folder", ["run", "TMP", "--results", "TMP/out"], None, ["is a directory"]),
    ("config-missing", ["run", "TMP/nothing.yaml"], None, ["nothing.yaml", "no such file"]),
    ("expr-core-units-zero", ["expr", "relu(x)", "--core-units", "0"], None, ["--core-units"]),
    ("expr-core-units-negative", ["expr", "relu(x)", "--core-units", "-3"], None, ["--core-units"]),
    ("expr-exponent", ["expr", "1e400 * x"], None, ["constant 1e400"]),
    ("plot-unknown-format", ["plot", "RUN", "-o", "TMP/x.txt"], None, [".png, .pdf or .svg"]),
    ("export-not-python", ["export", "RUN", "1", "-o", "RUN/config.yaml", "--force"], None, ["must end in .py"]),
    ("resume-top-negative", ["resume", "RUN", "--top", "-1"], None, ["--top"]),
    ("top-k-zero", ["top", "RUN", "-k", "0"], None, ["-k"]),
    ("unknown-section", ["run", "TMP/run.yaml", "--set", "chidl.steps=5"], None, ["chidl"]),
    ("unknown-setting", ["run", "TMP/run.yaml", "--set", "child.stpes=5"], None, ["child.stpes"]),
    ("not-a-run", ["top", "TMP"], None, ["not a run directory"]),
    ("unknown-baseline", ["significance", "RUN", "--baselines", "frobnicate"], None, ["--baselines"]),
    ("unknown-flag", ["top", "RUN", "--frobnicate"], None, ["actsearch top: error", "--frobnicate"]),
    # 10. output paths, checked before any work (issue 20, items 5 and 10): a folder, a missing folder, a file as the
    # folder, a folder no one may write in (sysfs refuses even root), a name too long, the wrong suffix
    *[(f"{command}-out-{kind}", [*argv, flag, path], change, [flag, *words])
      for command, argv, flag, suffix in (
          ("report", ["report", "RUN"], "-o", ".html"), ("plot", ["plot", "RUN"], "-o", ".png"),
          ("export", ["export", "RUN", "1"], "-o", ".py"),
          ("significance", ["significance", "RUN", "--seeds", "2", "--top", "1"], "--plot", ".png"),
          ("table-build", ["table", "build", "TMP/run.yaml", "--results", "TMP/out"], "--out", ".json"))
      for kind, path, change, words in (
          ("folder", "TMP", None, ["is a directory"]),
          ("missing-folder", f"TMP/missing/out{suffix}", None, ["no such directory", "missing"]),
          ("file-as-folder", f"TMP/file/out{suffix}", write_file("file", "x"), ["is not a directory"]),
          ("unwritable", f"{UNWRITABLE}/out{suffix}", None, ["cannot write there"]),
          ("name-too-long", f"TMP/{'n' * 300}{suffix}", None, ["cannot write there"]))],
    # 11. names are bounded; a list names its own flag; a space where nothing trains (issue 20 items 8, 10)
    ("run-name-300", ["run", "TMP/run.yaml", "--name", "n" * 300, "--results", "TMP/out"], None,
     ["--name", "300 characters", "at most 100"]),
    ("run-config-name-300", ["run", f"TMP/{'c' * 120}.yaml", "--results", "TMP/out"],
     write_file(f"{'c' * 120}.yaml", "seed: 1\n"), ["the run name", "--name", "at most 100"]),
    ("table-build-name-300", ["table", "build", "TMP/run.yaml", "--name", "n" * 300, "--out", "TMP/t.json",
                              "--results", "TMP/out"], None, ["--name", "at most 100"]),
    ("table-build-functions-empty", ["table", "build", "TMP/run.yaml", "--functions", ",,", "--out", "TMP/t.json",
                                     "--results", "TMP/out"], None, ["--functions ',,'", "empty entry"]),
    ("calibrate-activations-empty", ["calibrate", "--activations", "relu,,x"], None, ["--activations", "empty entry"]),
    *[(f"space-nothing-trains-{kind}", ["run", "TMP/run.yaml", "--set", "space.unary=[x, neg]", "--set",
                                        "space.binary=[add, sub]", "--set", f"controller.kind={kind}", "--results",
                                        "TMP/out"], None, ["space:", "passes the screen"])
      for kind in ("surrogate", "ppo", "exhaustive")],
    # 12. a user module that exits at import ends no command (issue 20 item 2)
    *[(f"{command}-user-module-{name}", argv, write_file("exits.py", code), words)
      for name, code, words in (
          ("sys-exit-0", "import sys\nsys.exit(0)\n", ["child.task", "sys.exit(0)"]),
          ("sys-exit-usage", "import sys\nsys.exit('usage: exits.py FILE')\n", ["child.task", "sys.exit('usage"]),
          ("os-exit-3", "import os\nos._exit(3)\n", ["child.task", "ends the process (exit code 3)"]))
      for command, argv in (
          ("run", ["run", "TMP/run.yaml", "--set", "child.task=TMP/exits.py:train", "--results", "TMP/out"]),
          ("train", ["train", "--activation", "relu", "--task", "TMP/exits.py:train"]),
          ("calibrate", ["calibrate", "--activations", "relu", "--task", "TMP/exits.py:train"]))],
    ("report-out-png", ["report", "RUN", "-o", "TMP/report.png"], None, ["-o", "must end in .html"]),
    ("plot-out-html", ["plot", "RUN", "-o", "TMP/x.html"], None, ["-o", ".png, .pdf or .svg"]),
    ("significance-plot-txt", ["significance", "RUN", "--plot", "TMP/s.txt"], None, ["--plot", ".png, .pdf or .svg"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(template, tmp_path, capfd, case):
    name, argv, change, words = case
    for item in template.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    run = tmp_path / "run"
    if change is not None:
        change(run, tmp_path)
    before = snapshot(run)
    argv = [a.replace("RUN", str(run)).replace("TMP", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}; stderr: {err[-2000:]}"
    assert len(lines) == 1 and len(lines[0]) <= MAX_ERROR_LINE, f"stderr is not one short line: {err[-2000:]!r}"
    assert "Traceback" not in err and "Traceback" not in out
    assert all(w in lines[0] for w in words), f"{words} not all in {lines[0]!r}"
    assert snapshot(run) == before, "the run's store or config changed"
    assert not (tmp_path / "out").exists(), "a refused command made a folder for runs"


def test_a_refused_resume_leaves_the_run_resumable(template, tmp_path, capfd):
    """After a resume refused for an unreachable address, the run still has its old resources."""
    for item in template.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    run = tmp_path / "run"
    assert main(["resume", str(run), "--set", "resources.address=127.0.0.1:1", "--set", "budget.children=20"]) == 2
    config = load_config(run / CONFIG_FILE)
    assert config.resources.address == "" and config.budget.children == 12


@pytest.mark.parametrize("text", [ALIAS_BOMB, f"child:\n  steps: {'9' * 4000}\n", f"seed: {'9' * 4000}\n"])
def test_hostile_configs_are_refused_quickly_within_a_memory_limit(tmp_path, text):
    path = tmp_path / "hostile.yaml"
    path.write_text(textwrap.dedent(text))
    script = textwrap.dedent(f"""
        import resource, sys, time
        from search.language.errors import UserError
        from search.loop.config import load_config
        size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, resource.RLIM_INFINITY))
        start = time.perf_counter()
        try:
            load_config({str(path)!r})
        except UserError as exc:
            print(f"{{time.perf_counter() - start:.3f}} {{str(exc)[:200]}}")
            sys.exit(0)
        sys.exit(1)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds, message = proc.stdout.split(" ", 1)
    assert float(seconds) < 2.0 and len(message) <= MAX_ERROR_LINE  # the bomb took 45 s and ran out of memory before


def test_a_pipe_closed_early_is_no_error(template, tmp_path):
    for item in template.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    proc = subprocess.run(f"{sys.executable} -m search.cli top {tmp_path / 'run'} -k 12 | head -n 1", shell=True,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr and "Error" not in proc.stderr


def test_a_space_with_fewer_functions_than_the_budget_stops_early(tmp_path):
    """3 distinct functions, a budget of 300: the run stops once nothing new comes, and says why."""
    import io

    from search.loop.driver import STALL_PROPOSALS, Driver
    from search.loop.engine import Engine
    from search.loop.executor import LocalExecutor
    from search.loop.progress import Progress, StopSignal
    from search.loop.store import Store

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**CONFIG, "controller": {"kind": "random"},
                                                        "space": {"unary": ["x", "relu"], "binary": ["add"]},
                                                        "budget": {"children": 300}}))
    config = load_config(tmp_path / "tiny.yaml")
    create_run(tmp_path / "tiny", config)
    with Store.open(tmp_path / "tiny") as store:
        progress = Progress(io.StringIO(), io.StringIO(), 60)
        driver = Driver(tmp_path / "tiny", config, store, progress)
        driver.restore()
        with StopSignal(lambda text: None) as stop:
            assert Engine(LocalExecutor(config, capacity=2), driver, progress, config.rewards).run(stop) == "stalled"
        assert store.evaluated() <= 4 and store.proposals() <= STALL_PROPOSALS + 50


def _another_value(section: str, name: str, value):
    """A different value a user could write for the setting, valid on its own."""
    special = {("controller", "kind"): "random", ("child", "task"): "mnist1d", ("child", "model"): "auto",
               ("child", "device"): "cpu", ("child", "compile"): "off", ("child", "split"): "test",
               ("child", "target"): "relu(x)", ("child", "data_dir"): "elsewhere"}
    if (section, name) in special:
        return special[section, name] if special[section, name] != value else None
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value + 0.01, 6)
    if isinstance(value, list):
        return value[:-1] if value else None  # an empty list has no shorter one (fidelity.rungs: [])
    return None


def test_every_edit_of_the_search_definition_is_refused_on_resume(template, tmp_path, capfd):
    """seed and every setting of space, controller, child and rewards, one at a time."""
    from search.loop.config import SEARCH_SECTIONS

    for item in template.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    run = tmp_path / "run"
    original = (run / CONFIG_FILE).read_text()
    raw = yaml.safe_load(original)
    tried = []
    for section in SEARCH_SECTIONS:
        fields = [(None, raw[section])] if section == "seed" else list(raw[section].items())
        for name, value in fields:
            new = _another_value(section, name, value)
            if new is None:
                continue
            edited = yaml.safe_load(original)
            if name is None:
                edited[section] = new
            else:
                edited[section][name] = new
            (run / CONFIG_FILE).write_text(yaml.safe_dump(edited))
            before = snapshot(run)
            code = main(["resume", str(run), "--set", "budget.children=20"])
            err = capfd.readouterr().err.strip()
            field = section if name is None else f"{section}.{name}"
            assert code == 2 and field in err and len(err.splitlines()) == 1, (field, err)
            assert snapshot(run) == before
            tried.append(field)
    assert len(tried) >= 40, tried  # seed, 3 space, 20 controller, 22 child, 3 rewards settings


def test_a_long_error_line_keeps_its_end(tmp_path, capsys):
    """A message longer than one line loses its middle, not its end, where it says what to do next."""
    run = tmp_path / ("a" * 250) / ("b" * 250) / "the-run"
    code = main(["top", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err) == MAX_ERROR_LINE and " ... " in err
    assert err.startswith("actsearch top: error: ") and err.endswith("start one with `actsearch run CONFIG --name NAME`")
    assert "/the-run: no such folder" in err


def test_configs_that_are_no_config_get_one_line_not_a_traceback_or_a_hang(tmp_path, capsys):
    """From a fuzz of the config reader: each of these raised a Python error (RecursionError, TypeError, OSError),
    hung on a pipe, or read until memory ran out."""
    deep = tmp_path / "deep.yaml"
    deep.write_text("seed: " + "[" * 5000 + "]" * 5000 + "\n")
    key = tmp_path / "key.yaml"
    key.write_text("? [a, b]\n: 1\n")
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)
    long_name = tmp_path / ("b" * 300 + ".yaml")
    for path, says in ((deep, "nested too deeply"), (key, "a key must be a name"), (pipe, "not a regular file"),
                       (long_name, "cannot be read")):
        code, _, err = run_cli(capsys, "run", path, "--results", tmp_path / "results")
        assert code == 2 and says in err and err.count("\n") == 1, err
    code, _, err = run_cli(capsys, "top", tmp_path / ("d" * 300))
    assert code == 2 and "file name too long" in err and err.count("\n") == 1, err
    options = REPO / "configs" / "transformer.yaml"
    for value, says in (("2020-01-01", "options.when is a date"), (".nan", "options.when is nan")):
        code, _, err = run_cli(capsys, "run", options, "--name", "o", "--results", tmp_path / "results", "--set",
                               f"child.options.when={value}")
        assert code == 2 and says in err and not (tmp_path / "results" / "o").exists(), err
    code, _, err = run_cli(capsys, "train", "--activation", "relu", "--task", "synthetic", "--lr", "inf")
    assert code == 2 and "child.lr: must be a finite number" in err, err
    # an empty path is the current folder: refused where it would write there
    for argv, says in ((["run", REPO / "configs" / "synthetic.yaml", "--results", ""], "--results: empty"),
                       (["train", "--activation", "relu", "--task", "synthetic", "--config", ""], "--config: empty"),
                       (["train", "--activation", "relu", "--task", "synthetic", "--data-dir", ""], "child.data_dir")):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and says in err, err


def test_resources_this_machine_cannot_give_are_refused_before_ray_starts_or_the_run_exists(tmp_path):
    """An embedded Ray has this machine's cores (or ``resources.num_cpus``) and its GPUs: a child needing more is bad
    input, refused at once, where it was refused after Ray had started, with the run's folder made."""
    config = tmp_path / "big.yaml"
    config.write_text("seed: 0\nspace: {core_units: 1}\ncontroller: {kind: random}\nchild: {task: synthetic}\n"
                      "budget: {children: 4}\nresources: {num_cpus: 1, cpus_per_child: 2}\n")
    done = subprocess.run([sys.executable, "-m", "search.cli", "run", str(config), "--results", str(tmp_path / "r")],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 2 and "a child needs 2 CPU and 0 GPU, this machine's Ray would have 1 CPU" in done.stderr
    assert not (tmp_path / "r").exists()
