"""The HTML report (one self-contained file) and the plots it embeds."""
from __future__ import annotations

import base64
import io
import struct

import numpy as np
import pytest
from conftest import Page

from search.analysis.plots import function_curves, moving_average, plot_functions, plot_progress, plot_significance
from search.analysis.report import build_report
from search.analysis.stats import compare_all, wins_table
from search.language.errors import UserError


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # IHDR: width, height


def png(fn, *args) -> bytes:
    buf = io.BytesIO()
    fn(*args, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def images():
    functions = png(plot_functions, ["x * sigmoid(beta * x)", "max(x, tanh(x))"])
    progress = png(plot_progress, [0.5, None, 0.7, 0.65, 0.8], [{"version": 1, "consumed": [0, 2, 3],
                                                                 "stats": {"entropy": 3.2}}])
    return functions, progress


TOP = [
    {"rank": 1, "expression": "x * sigmoid(beta * x)", "reward": 0.93124, "evaluations": 3, "status": "ok"},
    {"rank": 2, "expression": "max(x, tanh(x))", "reward": 0.92, "evaluations": 1, "status": "ok"},
]


def _significance():
    rng = np.random.default_rng(0)
    relu = {s: 0.9 + rng.normal(0, 0.01) for s in range(10)}
    scores = {"relu": relu,
              "x * sigmoid(beta * x)": {s: relu[s] + 0.01 + rng.normal(0, 0.002) for s in range(10)},
              "x": {s: relu[s] - 0.2 + rng.normal(0, 0.01) for s in range(10)}}
    comps = compare_all(scores, ["x * sigmoid(beta * x)", "x"], ["relu"])
    return comps, wins_table(scores, ["x * sigmoid(beta * x)", "x"], ["relu"])


def _build(tmp_path, images, **overrides):
    comps, wins = _significance()
    kwargs = dict(title="run <runs/demo>", config={"seed": 3, "child": {"task": "mnist1d", "steps": 200}},
                  summary={"candidates": 40, "best reward": 0.93124}, top_rows=TOP, function_png=images[0],
                  progress_png=images[1], significance=[c.to_dict() for c in comps], wins_table=wins)
    kwargs.update(overrides)
    path = tmp_path / "report.html"
    build_report(path, **kwargs)
    return path


def test_report_is_one_file_with_embedded_images_and_nothing_external(tmp_path, images):
    path = _build(tmp_path, images)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    sources = [v for tag, k, v in page.attrs if k in ("src", "href", "srcset", "poster", "data")]
    assert len(sources) == 2 and all(v.startswith("data:image/png;base64,") for v in sources)
    assert {base64.b64decode(v.split(",", 1)[1]) for v in sources} == set(images)
    assert "url(" not in text and "@import" not in text and "http" not in text
    assert "<runs/demo>" not in text and "run &lt;runs/demo&gt;" in text  # user text is escaped


def test_report_shows_the_top_table_and_the_verdicts(tmp_path, images):
    page = Page(_build(tmp_path, images).read_text(encoding="utf-8"))
    top = next(t for t in page.tables if t[0][:2] == ["rank", "expression"])
    swish = "x * sigmoid(beta * x) = swish"  # candidates show as display_text (the page folds its two spaces)
    assert top[1] == ["1", swish, "0.9312", "3", "ok"]
    assert top[2][1] == "max(x, tanh(x))"
    sig = next(t for t in page.tables if t[0][0] == "candidate" and "verdict" in t[0])
    rows = {row[0]: row for row in sig[1:]}  # one baseline each here, so every row names its candidate
    assert rows[swish][1] == "relu" and rows[swish][-1] == "better"
    assert rows["x"][-1] == "worse" and rows["x"][-2] == "0/0/10"
    wins = next(t for t in page.tables if t[0] == ["candidate", "relu"])
    assert wins[1:] == [[swish, "10/0/0"], ["x", "0/0/10"]]
    plain = Page(_build(tmp_path, images, show=str).read_text(encoding="utf-8"))  # the texts as given
    assert next(t for t in plain.tables if t[0] == ["candidate", "relu"])[1][0] == "x * sigmoid(beta * x)"
    text = "".join(cell for t in page.tables for row in t for cell in row)
    assert "mnist1d" not in text  # the config is in its own block, as YAML
    assert "task: mnist1d" in _build(tmp_path, images).read_text(encoding="utf-8")


def test_report_embeds_the_significance_picture_under_its_table(tmp_path, images):
    comps, _ = _significance()
    picture = png(plot_significance, comps)
    text = _build(tmp_path, images, significance_png=picture).read_text(encoding="utf-8")
    page = Page(text)
    sources = {v: base64.b64decode(v.split(",", 1)[1]) for tag, k, v in page.attrs if k == "src"}
    assert len(sources) == 3 and picture in sources.values()
    assert ('alt="significance comparisons"' in text
            and text.index("Wins / ties / losses") > text.index('alt="significance comparisons"')
            > text.index("Significance against baselines"))
    # no significance study: no picture, even if one is passed
    text = _build(tmp_path, images, significance=None, wins_table=None, significance_png=picture).read_text()
    assert "significance comparisons" not in text


def test_report_without_significance_says_how_to_get_it(tmp_path, images):
    text = _build(tmp_path, images, significance=None, wins_table=None).read_text(encoding="utf-8")
    assert "actsearch significance" in text
    assert "verdict" not in text and "Wins / ties / losses" not in text


def test_report_rejects_bad_input(tmp_path, images):
    with pytest.raises(ValueError, match="PNG"):
        _build(tmp_path, images, function_png=b"GIF89a...")
    with pytest.raises(UserError, match="no such directory"):
        build_report(tmp_path / "missing" / "r.html", title="t", config={}, summary={}, top_rows=[],
                     function_png=images[0], progress_png=images[1], significance=None, wins_table=None)


# ---------------------------------------------------------------- plots

def test_function_curves_derivative_is_the_analytic_one():
    x = np.linspace(-5, 5, 201)
    y, dy = function_curves("x * sigmoid(beta * x)", x)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(y, x * s, rtol=1e-12)
    np.testing.assert_allclose(dy, s + x * s * (1 - s), rtol=1e-10, atol=1e-12)
    y, dy = function_curves("beta", x)  # a constant: slope 0, not an autograd error
    assert np.all(y == 1) and np.all(dy == 0)


def test_plot_functions_lays_out_one_panel_per_function():
    one = png_size(png(plot_functions, ["relu(x)"]))
    four = png_size(png(plot_functions, ["relu(x)", "sin(x)", "cos(x) - x", "exp(sinh(x)**2)"]))  # inf at the edges
    six = png_size(png(plot_functions, ["relu(x)"] * 6))
    assert four[0] > 3 * one[0] and four[1] == one[1]  # a row of four
    assert six[0] == four[0] and six[1] > 1.8 * four[1]  # wraps to a second row
    with pytest.raises(ValueError, match="2 titles for 1"):
        plot_functions(["relu(x)"], io.BytesIO(), ["a", "b"])


def test_plot_progress_draws_the_entropy_panel_only_when_there_is_entropy():
    rewards = [0.1, None, 0.5, 0.55, 0.62, None, 0.6, 0.7]
    updates = [{"version": 1, "consumed": [0, 2], "stats": {"entropy": 5.0}},
               {"version": 2, "consumed": [3, 4], "stats": {"entropy": 4.1}}]
    with_entropy = png_size(png(plot_progress, rewards, updates))
    without = png_size(png(plot_progress, rewards, [{"version": 1, "consumed": [0], "stats": {"mean_reward": 0.3}}]))
    assert with_entropy[1] > 1.3 * without[1]
    assert png_size(png(plot_progress, [None, None], [])) == without  # nothing rewarded yet still draws


def test_plot_significance_writes_a_png_that_follows_the_data(tmp_path):
    comps, _ = _significance()
    path = tmp_path / "significance.png"
    plot_significance(comps, path, subtitle="10 seeds, test split")
    data = path.read_bytes()
    width, height = png_size(data)
    assert len(data) > 1000 and width > 500 and height > 200
    # the same comparisons give the same picture; other differences give another one
    assert png(plot_significance, comps) == png(plot_significance, comps)
    moved = [{**c.to_dict(), "diffs": [d + 0.05 for d in c.diffs]} for c in comps]
    assert png(plot_significance, moved) != png(plot_significance, comps)
    flipped = [{**c.to_dict(), "verdict": "no evidence"} for c in comps]  # the verdict is drawn too
    assert png(plot_significance, flipped) != png(plot_significance, comps)
    # one panel per comparison, dict records or Comparison objects alike
    one = png_size(png(plot_significance, [comps[0].to_dict()]))
    assert one[0] == width and png_size(png(plot_significance, comps))[1] > 1.4 * one[1]
    with pytest.raises(ValueError, match="no comparisons"):
        plot_significance([], io.BytesIO())


def test_moving_average_is_the_trailing_mean():
    v = [1.0, 3.0, 2.0, 6.0, 4.0]
    want = [np.mean(v[max(0, i - 2):i + 1]) for i in range(len(v))]
    np.testing.assert_allclose(moving_average(v, 3), want)


def test_the_progress_plots_lines_describe_children_trained_in_full(monkeypatch):
    """A child stopped at a rung scores a part-trained value: drawn (hollow), but left out of the moving average and
    the best so far, which a run's mostly stopped children pulled down to look like a search that learns nothing."""
    import search.analysis.plots as plots

    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    rewards = [0.5, 0.2, 0.6, 0.1, 0.3, 0.9]
    plot_progress(rewards, [], io.BytesIO(), stopped=[False, True, False, True, True, False])
    ax = figures[-1].axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    best = next(v for k, v in lines.items() if k == "best so far")
    average = next(v for k, v in lines.items() if k.startswith("moving average"))
    assert best == [0.5, 0.6, 0.9] and average == pytest.approx([0.5, 0.55, 2.0 / 3.0])
    assert any("3 stopped early" in t.get_text() for t in ax.get_legend().get_texts())


def test_a_stopped_runs_open_candidates_are_left_open_in_its_report_not_running():
    """An interrupted run's report said "2 running" when nothing ran."""
    from search.analysis.ranking import statuses_text
    from search.analysis.report import left_open

    assert statuses_text(left_open({"ok": 3, "running": 2, "proposed": 1})) == "3 ok, 3 left open"
    assert left_open({"ok": 3, "diverged": 1}) == {"ok": 3, "diverged": 1}


def test_the_progress_caption_names_the_entropy_panel_only_where_the_picture_has_one(tmp_path, images):
    """A random search's report spoke of the policy's entropy under a picture without that panel."""
    functions, progress = images
    for entropy in (True, False):
        path = tmp_path / f"r{entropy}.html"
        build_report(path, title="t", config={}, summary={}, top_rows=[], function_png=functions,
                     progress_png=progress, entropy=entropy)
        assert ("policy entropy per update" in path.read_text()) == entropy
