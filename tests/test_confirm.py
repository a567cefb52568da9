"""A run that ends with verdicts (the confirm: section): the answer first, the studies stored as significance stores
them, a confirmation killed and resumed, other children, the report, bad settings."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, Page
from conftest import run_cli as cli

from search.analysis.confirm import best_of, child_overrides, confirm_warnings, generalization
from search.analysis.significance import study_key
from search.analysis.stats import seeds_needed
from search.language.errors import UserError
from search.loop.config import config_from_dict, load_config, retrain_seed
from search.loop.pool import ChildPool
from search.loop.store import Store

BASELINES = ["relu(x)", "tanh(x)"]
SEEDS = seeds_needed(2 * len(BASELINES))  # 7: the fewest with which 4 comparisons can give a verdict


def write_config(tmp_path: Path, address: str, confirm: dict, name: str = "search.yaml", delay_s: float = 0.0) -> Path:
    config = {"seed": 3, "space": {"core_units": 1}, "controller": {"kind": "random"},
              "child": {"task": "synthetic", "noise": 0.01, "delay_s": delay_s}, "budget": {"children": 8},
              "resources": {"address": address, "cpus_per_child": 1},
              "confirm": {"enabled": True, "top": 2, "baselines": BASELINES, "seeds": SEEDS, **confirm}}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_run_ends_with_the_answer_stored_as_significance_on_each_child(address, tmp_path, capsys):
    results = tmp_path / "results"
    config = write_config(tmp_path, address, {"children": {"noisier": {"noise": 0.05}}})
    code, out, err = cli(capsys, "run", config, "--name", "c", "--results", results)
    assert code == 0, err
    assert "warning" not in err
    run = results / "c"
    # resuming the finished run prints its answer again and leaves the store as it was (no second, equal analysis)
    before = [(run / name).read_bytes() for name in ("store.sqlite", "config.yaml")]
    code, again, err = cli(capsys, "resume", run)
    assert code == 0 and "answer: " in again, err
    assert [(run / name).read_bytes() for name in ("store.sqlite", "config.yaml")] == before
    with Store.open(run, readonly=True) as store:
        studies = store.studies()
        analyses = store.significance()
        retrained = store.retrainings()
        top = [r["text"] for r in store.top(2)]
    # one study per child, stored as `actsearch significance` stores it, 2 functions x 2 baselines x SEEDS each
    assert [s["overrides"] for s in studies] == [[], ["child.noise=0.05"]]
    home = study_key(load_config(config))
    assert studies[0]["key"] == home and [a["study"] for a in analyses] == [s["key"] for s in studies]
    assert len(retrained) == 2 * 4 * SEEDS and {r["seed"] for r in retrained} == {retrain_seed(3, s)
                                                                                 for s in range(SEEDS)}
    for a in analyses:  # the search's best two (no re-training under the run's own split: the reward is the estimate)
        assert a["candidates"] == top and a["baselines"] == BASELINES and a["seeds"] == SEEDS
        assert len(a["comparisons"]) == 4
    # the closing output leads with the answer: the best function and one line per baseline, then the search, tables
    lines = out.splitlines()
    answer = next(i for i, line in enumerate(lines) if line.startswith("answer: "))
    assert answer < lines.index(next(line for line in lines if line.startswith(f"{run}: finished: 8/8 children")))
    assert answer < lines.index(next(line for line in lines if line.startswith("rank  reward")))
    comparisons = analyses[0]["comparisons"]
    best = best_of(comparisons)
    for i, baseline in enumerate(BASELINES, answer + 1):
        c = next(c for c in comparisons if c["candidate"] == best and c["baseline"] == baseline)
        line = lines[i].split()
        assert line[:3] == ["vs", baseline, *c["verdict"].split()[:1]]
        assert f"{c['mean_diff']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]" in lines[i]
        assert f"w/t/l {c['wins']}/{c['ties']}/{c['losses']}" in lines[i]
    assert "on other children (confirm.children):" in out and "  noisier (child settings changed: child.noise=0.05)" \
        in out
    assert "better on k of 2 children:" in out

    # the report leads with the best function and its verdicts, then the course of the search, then the tables
    report = tmp_path / "report.html"
    code, _, err = cli(capsys, "report", run, "-o", report)
    assert code == 0, err
    text = report.read_text(encoding="utf-8")
    order = [text.index(s) for s in ('alt="best function"', 'alt="significance comparisons"', "<h2>Progress",
                                     "<h2>Top candidates", "<h2>Per child")]
    assert order == sorted(order)
    page = Page(text)
    verdicts = next(t for t in page.tables if t[0][:2] == ["baseline", "verdict"])
    assert [row[:2] for row in verdicts[1:]] == [[c["baseline"], c["verdict"]] for c in comparisons
                                                 if c["candidate"] == best]
    per_child = next(t for t in page.tables if t[0][:2] == ["child", "function"])
    assert len(per_child) == 1 + 2 * 2 and per_child[0][2:] == BASELINES

    # a resumed run may change the confirmation: one more seed trains one more of each function, nothing else
    dispatched = []
    submit = ChildPool.submit
    original = ChildPool.submit
    ChildPool.submit = lambda pool, key, activation, seed, *a: dispatched.append((key, seed)) or submit(
        pool, key, activation, seed, *a)
    try:
        code, out, err = cli(capsys, "resume", run, "--set", f"confirm.seeds={SEEDS + 1}")
    finally:
        ChildPool.submit = original
    assert code == 0, err
    assert "already complete" in out and len(dispatched) == 2 * 4 and {s for _, s in dispatched} == {
        retrain_seed(3, SEEDS)}
    assert load_config(run / "config.yaml").confirm.seeds == SEEDS + 1

    # a later test of the same study (a typed-in candidate, one baseline, fewer seeds) prints its own verdicts but does
    # not replace the run's answer in what top, report and export show
    with Store.open(run, readonly=True) as store:
        [answer, _] = store.significance()
    assert answer["seeds"] == SEEDS + 1 and answer["baselines"] == BASELINES
    code, out, err = cli(capsys, "significance", run, "--candidates", "x * tanh(x)", "--baselines", "relu(x)",
                         "--seeds", "3")
    assert code == 0, err
    with Store.open(run, readonly=True) as store:
        assert store.significance()[0] == answer and len(store.studies()) == 2
    code, out, err = cli(capsys, "top", run)
    assert code == 0 and f"significance: {SEEDS + 1} seeds" in out, out
    assert "(the run's confirmation; 1 later test of it printed its own verdicts" in out  # not lost, just not shown


def test_a_confirmation_killed_midway_resumes_without_retraining_what_was_recorded(address, tmp_path, capsys,
                                                                                   monkeypatch):
    results = tmp_path / "results"
    config = write_config(tmp_path, address, {}, delay_s=0.1)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    killed = subprocess.run([sys.executable, str(REPO / "tests" / "killpoints.py"), "retrained:5", "run", str(config),
                             "--name", "k", "--results", str(results)], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = results / "k"
    with Store.open(run, readonly=True) as store:
        before = store.retrainings()
        assert store.evaluated() == 8 and store.significance() == []
    assert len(before) == 5

    dispatched = []
    submit = ChildPool.submit
    monkeypatch.setattr(ChildPool, "submit", lambda pool, key, activation, seed, *a: dispatched.append(
        (key, activation, seed)) or submit(pool, key, activation, seed, *a))
    code, out, err = cli(capsys, "resume", run)
    assert code == 0, err
    assert "already complete (8/8 children)" in out and "answer: " in out
    number = {retrain_seed(3, n): n for n in range(SEEDS)}
    redone = {(a, number[seed]) for _, a, seed in dispatched}
    assert all(isinstance(key, tuple) for key, _, _ in dispatched)  # re-trainings (function, seed number) only
    assert len(dispatched) == len(redone) == 4 * SEEDS - 5
    assert not redone & {(r["activation"], r["seed_number"]) for r in before}
    with Store.open(run, readonly=True) as store:
        after = {(r["activation"], r["seed_number"]): r for r in store.retrainings()}
        [analysis] = store.significance()
    assert len(after) == 4 * SEEDS and all(after[r["activation"], r["seed_number"]] == r for r in before)
    assert analysis["seeds"] == SEEDS and len(analysis["comparisons"]) == 4


def test_a_ctrl_c_as_the_confirmation_connects_says_how_to_resume_and_keeps_the_run(address, tmp_path, capsys,
                                                                                      monkeypatch):
    """A Ctrl-C that lands before a stage installs its own handling (here: as the confirmation's pool starts) ends
    with exit 130, the resume command and a line in run.log, and loses nothing."""
    config = write_config(tmp_path, address, {})
    code, _, err = cli(capsys, "run", config, "--name", "c", "--results", tmp_path / "results",
                       "--set", "confirm.enabled=false")
    assert code == 0, err
    run = tmp_path / "results" / "c"
    with Store.open(run, readonly=True) as store:
        before = store.candidates(("ok", "failed"))

    def interrupted(pool):
        raise KeyboardInterrupt

    monkeypatch.setattr(ChildPool, "__enter__", interrupted)
    code, _, err = cli(capsys, "resume", run, "--set", "confirm.enabled=true")
    assert code == 130 and f"continue with `actsearch resume {run}`" in err, err
    assert "interrupted (Ctrl-C)" in (run / "run.log").read_text().splitlines()[-1]
    with Store.open(run, readonly=True) as store:
        assert store.candidates(("ok", "failed")) == before and store.retrainings() == []


def test_too_few_seeds_warn_with_the_number_needed_and_bad_settings_stop_in_one_line(tmp_path, capsys):
    config = config_from_dict({"child": {"task": "mnist1d"}, "confirm": {"enabled": True, "top": 3, "seeds": 5}})
    [warning] = confirm_warnings(config)
    assert warning.startswith("warning: confirm.seeds 5 can give no verdict for 3 x 3 comparisons")
    assert warning.endswith(f"--set confirm.seeds={seeds_needed(9)}")
    assert confirm_warnings(config_from_dict({"confirm": {"enabled": True, "top": 3, "seeds": 9}})) == []
    assert confirm_warnings(config_from_dict({"confirm": {"seeds": 1}})) == []  # off: nothing to warn about
    val = confirm_warnings(config_from_dict({"confirm": {"enabled": True, "split": "val"}}))
    assert len(val) == 1 and "selection bias" in val[0] and "confirm.split test" in val[0]

    for confirm, message in [
        ({"baselines": ["relu", "relux"]}, "confirm.baselines: unknown activation 'relux'"),
        ({"baselines": []}, "confirm.baselines: must name at least one baseline"),
        ({"seeds": 0}, "confirm.seeds: must be from 1 to 1000, got 0"),
        ({"split": "train"}, "confirm.split: must be val or test, got 'train'"),
        ({"children": {"big": {"steps": 0}}}, "confirm.children.big.steps: must be from 1"),
        ({"children": {"big": {"stepz": 9}}}, "confirm.children.big.stepz: unknown setting"),
        ({"children": {"same": {"steps": 500}}}, "confirm.children.same: is the run's own child"),
        ({"children": {"big": {"split": "val"}}}, "confirm.children.big.split: the split of every confirmation"),
        ({"children": {"big": 1500}}, "confirm.children.big: must be a mapping of the child settings"),
        ({"topp": 3}, "confirm.topp: unknown setting"),
    ]:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"child": {"task": "mnist1d", "steps": 500}, "confirm": confirm}))
        code, out, err = cli(capsys, "run", path, "--results", tmp_path / "results")
        assert code == 2 and f"error: {message}" in err and len(err.strip().splitlines()) == 1, (confirm, err)
        assert not (tmp_path / "results").exists()
    with pytest.raises(UserError, match="confirm.baselines: the synthetic task scores expressions only"):
        config_from_dict({"child": {"task": "synthetic"}, "confirm": {"enabled": True}})


def test_other_children_as_overrides_and_generalization_counts():
    assert child_overrides({"steps": 1500, "task": "cifar10"}) == ["child.steps=1500", "child.task=cifar10"]
    assert child_overrides({"options": {"steps": 1200, "lr": 0.001}}) == ["child.options.steps=1200",
                                                                          "child.options.lr=0.001"]
    merged = config_from_dict({"child": {"task": "examples/char_lm.py:train", "options": {"a": 1, "b": 2}},
                               "confirm": {"children": {"x": {"options": {"b": 3}}}}})
    assert merged.confirm.children == {"x": {"options": {"b": 3}}}
    with pytest.raises(UserError, match="confirm.children.x: is the run's own child"):  # options merge key by key
        config_from_dict({"child": {"task": "examples/char_lm.py:train", "options": {"a": 1, "b": 2}},
                          "confirm": {"children": {"x": {"options": {"b": 2}}}}})

    def c(candidate, baseline, verdict, mean=0.5):
        return {"candidate": candidate, "baseline": baseline, "verdict": verdict, "candidate_mean": mean}

    home = [c("f", "relu", "better", 0.9), c("f", "gelu", "no evidence", 0.9), c("g", "relu", "better", 0.95),
            c("g", "gelu", "worse", 0.95)]
    other = [c("f", "relu", "better"), c("f", "gelu", "better"), c("g", "relu", "no evidence"),
             c("g", "gelu", "worse")]
    assert best_of(home) == "f"  # as many "better" as g, fewer "worse"
    assert best_of([c("f", "relu", "better", 0.9), c("g", "relu", "better", 0.95)]) == "g"  # then the mean
    assert best_of([]) is None
    assert generalization([("home", home), ("other", other)]) == {"f": {"relu": (2, 2), "gelu": (1, 2)},
                                                                  "g": {"relu": (1, 2), "gelu": (0, 2)}}


def test_functions_chosen_for_confirmation_are_not_chosen_by_the_scores_that_test_them(address, tmp_path, capsys):
    """Re-trainings under the run's own child settings (an earlier ``actsearch significance --split val``, or any on
    the synthetic task, which has no split) are pooled with the search's rewards to rank functions. Where the
    confirmation scores that same study it would reuse them: a function ranked first by them would be tested on the
    scores that chose it. So it chooses by the search's rewards alone there (on a task with held-out data, confirming
    on the test split, the pooled val estimate still chooses: the test scores are fresh)."""
    from search.analysis.confirm import CHOSEN_META, best_estimates, own_study

    results = tmp_path / "results"
    code, _, err = cli(capsys, "run", write_config(tmp_path, address, {"enabled": False}), "--name", "c", "--results",
                       results)
    assert code == 0, err
    run = results / "c"
    config = load_config(run / "config.yaml")
    with Store.open(run) as store:
        top = [r["text"] for r in store.top(3) if r["status"] == "ok"]
        lucky = top[-1]  # an earlier study that happened to favour the third
        store.record_study(study_key(config), config.to_dict()["child"], [])
        for s in range(3):
            store.record_retraining(study_key(config), lucky, s, retrain_seed(3, s), "ok", 1.0, {"accuracy": 1.0})
        assert best_estimates(store, config, 1) == [lucky]  # the pooled estimate
    assert own_study(run, config)  # synthetic: the confirmation's study is that very one
    code, out, err = cli(capsys, "resume", run, "--set", "confirm.enabled=true", "--set", "confirm.top=1")
    assert code == 0, err
    with Store.open(run, readonly=True) as store:
        assert store.get_meta(CHOSEN_META)["texts"] == [top[0]] != [lucky]


def test_a_user_childs_options_can_be_cleared_for_a_built_in_child(tmp_path):
    """Transfer from a user's child to the proxy was impossible: the run's options went along and a built-in child
    takes none, and neither --set 'child.options={}' nor confirm.children's options: {} cleared them."""
    import dataclasses

    from search.analysis.confirm import child_overrides
    from search.loop.config import config_with_overrides, load_config
    from search.loop.confirm import ConfirmSettings

    (tmp_path / "kids.py").write_text("def train(activation, seed, device, options):\n"
                                      "    return {'accuracy': 0.5}\n")  # the proxy's metric: one rewards section
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "child": {"task": f"{tmp_path / 'kids.py'}:train", "options": {"width": 8}},
        "confirm": {"baselines": ["relu"], "children": {"proxy": {"task": "mnist1d", "options": {}}}}}))
    config = load_config(tmp_path / "c.yaml")  # the proxy entry is a valid child: no options
    overrides = child_overrides(config.confirm.children["proxy"])
    assert sorted(overrides) == ["child.options={}", "child.task=mnist1d"]
    proxy = config_with_overrides(dataclasses.replace(config, confirm=ConfirmSettings()), overrides)  # as a study
    assert proxy.child.task == "mnist1d" and proxy.child.options == {}
