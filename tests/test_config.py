"""Search configs as a user writes them: defaults, overrides, the shipped configs, and bad input (exit 2, no run)."""
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from search.language.errors import UserError
from search.loop.config import SECTIONS, Config, config_from_dict, field_docs, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(text)
    return path




# ---------------------------------------------------------------- good configs

def test_empty_config_gives_documented_defaults(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config == Config()
    assert config.child.task == "mnist1d" and config.controller.kind == "ppo" and config.space.core_units == 1
    assert len(config.space.unary) == 25 and len(config.space.binary) == 10


def test_every_setting_is_documented():
    for cls in [Config, *SECTIONS.values()]:
        import dataclasses

        missing = [f.name for f in dataclasses.fields(cls) if f.name not in SECTIONS and f.name not in field_docs(cls)]
        assert not missing, f"{cls.__name__} fields without a comment: {missing}"


def test_overrides_are_yaml_values_and_win_over_the_file(tmp_path):
    path = write(tmp_path, "child:\n  steps: 100\n  lr: 5e-4\nbudget:\n  children: 10\n")
    config = load_config(path, ["child.steps=250", "space.unary=[relu, tanh, x]", "seed=7",
                                "rewards.reject_linear=false", "resources.gpus_per_child=0.5"])
    assert config.child.steps == 250 and config.child.lr == 5e-4  # PyYAML reads 5e-4 as text; still a number
    assert config.space.unary == ("relu", "tanh", "x") and config.seed == 7
    assert config.rewards.reject_linear is False and config.resources.gpus_per_child == 0.5
    assert config.budget.children == 10


def test_the_documented_on_and_off_read_as_written_though_yaml_reads_them_as_booleans(tmp_path):
    """``compile: off`` (as docs/config.md writes the values) was refused: "must be a string, got False (bool)"."""
    (tmp_path / "c.yaml").write_text("child:\n  compile: off\n  channels_last: on\n")
    config = load_config(tmp_path / "c.yaml", ["child.kernel=eager"])
    assert (config.child.compile, config.child.channels_last) == ("off", "on")
    assert load_config(None, ["child.compile=on"]).child.compile == "on"
    with pytest.raises(UserError, match="child.device: must be one of auto, cpu, cuda, got 'off'"):
        load_config(None, ["child.device=off"])


def test_an_entry_of_a_mapping_setting_may_be_a_mapping(tmp_path):
    """``--set confirm.children.x3={steps: 1500}`` names another child to confirm on, from the command line."""
    path = write(tmp_path, "child:\n  steps: 500\n")
    config = load_config(path, ["confirm.children.x3={steps: 1500}", "confirm.enabled=true"])
    assert config.confirm.children == {"x3": {"steps": 1500}}
    with pytest.raises(UserError, match="child.steps: give one value per --set, not a mapping"):
        load_config(path, ["child.steps={a: 1}"])


def test_resolved_yaml_round_trips_with_a_comment_per_setting(tmp_path):
    config = load_config(None, ["child.task=synthetic", "space.core_units=2", "child.target=max(x, 0)"])
    text = config.to_yaml()
    assert config_from_dict(yaml.safe_load(text)) == config
    assert "  steps: 500  # SGD steps per child" in text


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    config.space.build()


def test_shipped_configs_are_the_ones_promised():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert {"quickstart", "ppo", "paper", "exhaustive", "random", "evolution", "synthetic", "table"} <= names
    paper = load_config(CONFIGS / "paper.yaml")
    assert (paper.child.task, paper.child.resolved_model, paper.child.steps, paper.child.batch_size) == \
        ("cifar10", "resnet20", 10_000, 128)
    assert paper.resources.gpus_per_child > 0
    quick = load_config(CONFIGS / "quickstart.yaml")
    assert (quick.child.task, quick.controller.kind, quick.resources.address) == ("mnist1d", "surrogate", "")
    ppo = load_config(CONFIGS / "ppo.yaml")
    assert ppo.controller.kind == "ppo" and ppo.section_differences(quick, ("space", "child", "budget")) == []
    assert quick.resources.gpus_per_child == 0 and quick.child.device == "cpu"


# ---------------------------------------------------------------- bad configs: exit 2, the field named, nothing made

BAD_FILES = [
    ("child:\n  stepz: 100\n", "child.stepz: unknown setting", "did you mean steps"),
    ("chid:\n  steps: 100\n", "chid: unknown section", "did you mean child"),
    ("child:\n  steps: lots\n", "child.steps: must be an integer", "'lots'"),
    ("child:\n  steps: 0\n", "child.steps: must be from 1 to 10,000,000", "got 0"),
    ("child:\n  task: imagenet\n", "child.task: must be one of", "mnist1d, cifar10, cifar100, synthetic"),
    ("space:\n  unary: [relu, swoosh]\n", "space.unary: unknown unary operator 'swoosh'", "allowed: x, neg"),
    ("space:\n  binary: [add, relu]\n", "space.binary: unknown binary operator 'relu'", "allowed: add"),
    ("space:\n  core_units: 0\n", "space.core_units: must be from 1 to 8", ""),
    ("controller:\n  kind: bayes\n", "controller.kind: must be one of", "ppo, reinforce, random"),
    ("controller:\n  tournament_size: 64\n", "controller.tournament_size", "population_size"),
    ("budget:\n  children: 2.5\n", "budget.children: must be an integer", "2.5"),
    ("budget:\n  children: 10\n  max_proposals: 5\n", "budget.max_proposals", ">= children"),
    ("resources:\n  gpus_per_child: -1\n", "resources.gpus_per_child: must be from 0 to 64", ""),
    ("resources:\n  address: http://head:8265\n", "resources.address", "ray://HOST:PORT"),
    ("rewards:\n  reject_linear: maybe\n", "rewards.reject_linear: must be true or false", ""),
    ("rewards:\n  screened: .nan\n", "rewards.screened: must be a finite number", ""),
    ("child:\n  device: cuda\n", "resources.gpus_per_child: must be > 0 when child.device is cuda", ""),
    ("child:\n  task: synthetic\n  target: beta * x\n", "child.target", "linear"),
    ("child: [1, 2]\n", "child: must be a mapping", ""),
    ("seed: -3\n", "seed: must be in [0, 2**32)", ""),
    ("- just\n- a list\n", "the top level must be a mapping", ""),
    ("child:\n  steps: [100\n", "not valid YAML", "line"),
]


@pytest.mark.parametrize("text, field, detail", BAD_FILES, ids=[b[1].split(":")[0] + "-" + str(i)
                                                                for i, b in enumerate(BAD_FILES)])
def test_bad_config_exits_2_naming_the_field_and_creates_nothing(tmp_path, capsys, text, field, detail):
    results = tmp_path / "results"
    code, out, err = run_cli(capsys, "run", write(tmp_path, text), "--name", "bad", "--results", results)
    assert code == 2
    assert field in err and detail in err
    assert len(err.strip().splitlines()) == 1  # one line
    assert not results.exists()


BAD_OVERRIDES = [
    ("child.steps=-5", "child.steps: must be from 1 to 10,000,000"),
    ("child.nope=1", "child.nope: unknown setting"),
    ("chlid.steps=5", "unknown section 'chlid'"),
    ("child.steps", "expected KEY.PATH=VALUE"),
    ("child.steps.deep=3", "expected SECTION.FIELD=VALUE"),
    ("budget.children=[1, 2]", "budget.children: must be an integer"),
    ("space.unary=relu, foo", "space.unary: unknown unary operator 'foo'"),
    ("controller.lr=0", "controller.lr: must be > 0"),
    ("controller.clip=1.5", "controller.clip: must be from 0 to 1, exclusive"),
]


@pytest.mark.parametrize("override, message", BAD_OVERRIDES)
def test_bad_override_exits_2_and_creates_nothing(tmp_path, capsys, override, message):
    results = tmp_path / "results"
    code, _, err = run_cli(capsys, "run", CONFIGS / "synthetic.yaml", "--set", override, "--results", results)
    assert code == 2 and message in err
    assert not results.exists()


def test_missing_config_file_and_bad_run_name(tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", tmp_path / "nope.yaml", "--results", tmp_path / "r")
    assert code == 2 and "nope.yaml: no such file" in err
    code, _, err = run_cli(capsys, "run", CONFIGS / "synthetic.yaml", "--name", "../escape", "--results",
                           tmp_path / "r")
    assert code == 2 and "--name '../escape'" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "escape").exists()


def test_resume_of_a_non_run_directory_is_a_user_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "resume", tmp_path)
    assert code == 2 and "not a run directory" in err


def test_load_config_raises_user_error():
    with pytest.raises(UserError, match=r"^child\.batch_size: must be from 1 to 65,536, got 0$"):
        load_config(None, ["child.batch_size=0"])


def test_an_unreachable_ray_cluster_exits_2_and_creates_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    code, _, err = run_cli(capsys, "run", CONFIGS / "synthetic.yaml", "--set", "resources.address=127.0.0.1:1",
                           "--results", results)
    assert code == 2 and "resources.address: nothing answers at '127.0.0.1:1'" in err
    assert not results.exists()


# ---------------------------------------------------------------- checks are shapes only; module shadowing

def test_a_config_is_checked_without_loading_the_child(tmp_path):
    """Loading a config reads no table and imports no user code: a missing file is refused by check_child_code (what
    `run` calls before it creates a run), never by load_config (what `top`, `report`, ... call)."""
    from search.loop.config import check_child_code

    for overrides, field in ((["child.task=nowhere/gone.py:train", "rewards.metric=loss"], "child.task"),
                             (["child.task=table", "child.table=nowhere.json"], "child.table"),
                             ([f"resources.working_dir={tmp_path / 'nothing'}"], "resources.working_dir")):
        config = load_config(None, overrides)
        with pytest.raises(UserError, match=rf"^{field}: .*(no such|nowhere)"):
            check_child_code(config)


SHADOWS = [("evaluator.py", "evaluator"), ("search.py", "search"), ("controller/__init__.py", "controller")]


@pytest.mark.parametrize("file, package", SHADOWS)
def test_a_folder_that_shadows_a_package_is_named(tmp_path, file, package):
    from search.language.shadowing import check_shadowing, shadowing_problem

    (tmp_path / file).parent.mkdir(exist_ok=True)
    (tmp_path / file).write_text("x = 1\n")
    problem = shadowing_problem([str(tmp_path)])
    assert problem and str(tmp_path / file.removesuffix("/__init__.py")) in problem and repr(package) in problem
    with pytest.raises(UserError, match="shadows actsearch's package"):  # what a worker checks at start-up
        check_shadowing([str(tmp_path)])
    assert shadowing_problem([str(Path(__file__).resolve().parents[1])]) is None  # the installation itself
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "search").mkdir()  # a folder without __init__.py shadows nothing
    assert shadowing_problem([str(tmp_path / "other")]) is None


def test_a_working_dir_or_py_module_that_shadows_is_refused_before_a_run(tmp_path):
    from search.loop.config import check_child_code

    (tmp_path / "evaluator.py").write_text("x = 1\n")
    with pytest.raises(UserError, match=r"^resources.working_dir: .*evaluator.py shadows actsearch's package"):
        check_child_code(load_config(None, [f"resources.working_dir={tmp_path}"]))
    with pytest.raises(UserError, match=r"^resources.py_modules: .*evaluator.py would be imported on the workers"):
        check_child_code(load_config(None, [f"resources.py_modules=[{tmp_path / 'evaluator.py'}]"]))


def test_the_command_line_names_a_shadowing_file_from_the_current_folder(tmp_path):
    import subprocess
    import sys

    (tmp_path / "evaluator.py").write_text("raise SystemExit('the user module ran')\n")
    done = subprocess.run([sys.executable, "-m", "search.cli", "expr", "relu(x)"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "evaluator.py") in lines[0] and "'evaluator'" in lines[0]
