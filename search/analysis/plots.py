"""Pictures of a search: the top functions with their derivatives, the search's course, and a significance test.

Each function writes a PNG to ``path`` (a file name, or a binary file object such as ``io.BytesIO`` when the caller
wants the bytes, e.g. for the HTML report). matplotlib runs headless (Agg).
"""
from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: no display on workers or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from search.analysis.stats import format_p  # noqa: E402
from search.language.expression import Expression  # noqa: E402

X_RANGE = (-5.0, 5.0)
FUNCTION_COLOR, DERIVATIVE_COLOR = "#1f5fa8", "#d9622b"
VERDICT_COLORS = {"better": "#1e7b45", "worse": "#b3261e"}  # the report's badge colours; anything else is grey
NO_VERDICT_COLOR = "#5f6b76"
DPI = 110
SUBTITLE_CHARS = 110  # characters of a title line that fit the significance picture's 9 inches at 10.5 pt


def function_curves(expr: Expression | str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(f(x), f'(x))`` in float64 with every beta at its initial value 1; the derivative by autograd."""
    expr = Expression.parse(expr) if isinstance(expr, str) else expr
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    y = expr(xt, 1.0)
    dy = torch.autograd.grad(y.sum(), xt, allow_unused=True)[0] if y.requires_grad else None
    dy = torch.zeros_like(xt) if dy is None else dy  # a function that ignores x (a constant) has slope 0
    return y.detach().numpy(), dy.detach().numpy()


def _limits(values: np.ndarray, min_span: float = 2.0) -> tuple[float, float]:
    """A y-range showing the bulk of the values: central 98% (so exp(x) does not flatten everything else), padded."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return -1.0, 1.0
    lo, hi = np.percentile(finite, [1, 99])
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # keep the axis in view: it is the reference the eye reads against
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    pad = 0.08 * (hi - lo)
    return float(lo - pad), float(hi + pad)


def plot_functions(exprs: Sequence[Expression | str], path: str | os.PathLike | IO[bytes],
                   titles: Sequence[str] | None = None, *, columns: int = 4) -> None:
    """The functions and their derivatives on [-5, 5], one panel each (the paper's Figure 3 style), betas at 1.

    exprs: expressions (or their text); titles: one per panel (default: the expression text); path: PNG destination.
    """
    exprs = [Expression.parse(e) if isinstance(e, str) else e for e in exprs]
    if not exprs:
        raise ValueError("no functions to plot")
    if titles is not None and len(titles) != len(exprs):
        raise ValueError(f"{len(titles)} titles for {len(exprs)} functions")
    titles = list(titles) if titles is not None else [e.text for e in exprs]
    cols = min(columns, len(exprs))
    rows = math.ceil(len(exprs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.9 * rows + 0.5), squeeze=False)
    x = np.linspace(*X_RANGE, 1001)
    for ax, expr, title in zip(axes.flat, exprs, titles):
        y, dy = function_curves(expr, x)
        ax.axhline(0, color="#999999", lw=0.7, zorder=0)
        ax.axvline(0, color="#999999", lw=0.7, zorder=0)
        ax.plot(x, dy, color=DERIVATIVE_COLOR, lw=1.4, ls="--")
        ax.plot(x, y, color=FUNCTION_COLOR, lw=2.0)
        ax.set_xlim(*X_RANGE)
        ax.set_ylim(*_limits(np.concatenate([y, dy])))
        ax.grid(True, color="#e6e6e6", lw=0.6)
        ax.tick_params(labelsize=9)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        # wrapped to a column's width
        ax.set_title("\n".join(textwrap.wrap(title, 28)) or title, fontsize=10.5, family="monospace")
    for ax in axes.flat[len(exprs):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=FUNCTION_COLOR, lw=2.0, label="f(x)"),
               Line2D([], [], color=DERIVATIVE_COLOR, lw=1.4, ls="--", label="f'(x)")]
    fig.legend(handles=handles, loc="upper center", ncol=3, frameon=False, fontsize=10,
               title="every beta at its initial value 1", title_fontsize=9.5)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    fig.savefig(path, dpi=DPI, format=_format(path))
    plt.close(fig)


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    v = np.asarray(values, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, v.size + 1)
    start = np.maximum(idx - window, 0)
    return (csum[idx] - csum[start]) / (idx - start)


def plot_progress(rewards: Sequence[float | None], updates: Sequence[dict],
                  path: str | os.PathLike | IO[bytes], label: str = "reward",
                  stopped: Sequence[bool] | None = None) -> bool:
    """The course of a search: reward per candidate, best-so-far and a moving average; controller entropy per update.
    Returns whether it drew the entropy panel.

    rewards: by candidate index (None: no reward yet, not drawn); updates: the proposer's update records
    (``{"version", "consumed": [indices], "stats": {"entropy", ...}}``); the entropy panel is left out when no update
    carries an entropy (random, exhaustive and evolution proposers). path: PNG destination. label: what the rewards
    are (the y axis), e.g. "reward = -val_bpc (higher is better)". stopped: per candidate, whether early stopping cut
    its child at a rung: its reward is a part-trained score, drawn hollow and left out of the moving average and the
    best so far (which then describe children trained in full).
    """
    r = np.array([np.nan if v is None else float(v) for v in rewards], dtype=np.float64)
    idx = np.arange(r.size)
    ok = np.isfinite(r)
    cut = np.zeros(r.size, dtype=bool) if stopped is None else np.array(list(stopped), dtype=bool)
    points = [(u, u.get("stats", {}).get("entropy")) for u in updates]
    points = [(u, e) for u, e in points if e is not None and math.isfinite(e)]
    panels = 2 if points else 1
    fig, axes = plt.subplots(panels, 1, figsize=(9, 4.2 + 2.4 * (panels - 1)), squeeze=False, sharex=False,
                             gridspec_kw={"height_ratios": [5, 3][:panels]})
    ax = axes[0, 0]
    if ok.any():
        full = ok & ~cut  # trained in full (or failed): what the lines describe
        ri, rv = idx[full], r[full]
        window = max(5, rv.size // 15)
        average = moving_average(rv, window) if rv.size else np.empty(0)
        lo, hi = _reward_limits(r[ok], keep=average)
        size = 9 if ok.sum() > 200 else 20  # few points: make each one visible
        shown = rv >= lo
        ax.scatter(ri[shown], rv[shown], s=size, color="#7a8a99", alpha=0.6, lw=0,
                   label="candidate reward" + (" (not stopped early)" if cut.any() else ""))
        part = ok & cut
        if part.any():
            pi, pv = idx[part], np.maximum(r[part], lo)
            ax.scatter(pi, pv, s=size, facecolors="none", edgecolors="#9aa7b3", alpha=0.7, lw=0.8,
                       label=f"{int(part.sum())} stopped early (score at its rung)")
        if (~shown).any():  # far-below rewards (screened, diverged) pinned to the edge, not squashing the rest
            ax.scatter(ri[~shown], np.full((~shown).sum(), lo), marker="v", s=size + 8, color="#b04040", alpha=0.7,
                       lw=0, clip_on=False, zorder=3, label=f"{(~shown).sum()} below {lo:.3g} (lowest {rv.min():.3g})")
        if rv.size:
            ax.plot(ri, average, color=FUNCTION_COLOR, lw=1.6, label=f"moving average ({window})")
            ax.step(ri, np.maximum.accumulate(rv), where="post", color="#c0392b", lw=1.8, label="best so far")
        ax.set_ylim(lo, hi)
        ax.legend(loc="best", fontsize=8, frameon=True, framealpha=0.9)  # where it covers the fewest points
    else:
        ax.text(0.5, 0.5, "no rewards yet", transform=ax.transAxes, ha="center", va="center", color="#666666")
    ax.set_xlim(-0.5, max(r.size, 1) - 0.5)
    ax.set_ylabel(label)
    ax.set_xlabel("candidate index")
    ax.set_title(f"reward of {int(ok.sum())} candidates" + (f" ({r.size - int(ok.sum())} more without one yet)"
                                                            if (~ok).any() else ""), fontsize=10)
    _tidy(ax)
    if points:
        ex = axes[1, 0]
        consumed = [max(u["consumed"]) if u.get("consumed") else None for u, _ in points]
        if all(c is not None for c in consumed):  # place each update at the last candidate it learned from
            xs, label = consumed, "candidate index (last one the update learned from)"
            ex.set_xlim(ax.get_xlim())
        else:
            xs, label = [u.get("version", i + 1) for i, (u, _) in enumerate(points)], "update"
        ex.plot(xs, [e for _, e in points], color="#6c3fa0", lw=1.4, marker="o", ms=3)
        ex.set_ylabel("policy entropy (nats)")
        ex.set_xlabel(label)
        ex.set_title(f"controller entropy over {len(points)} updates", fontsize=10)
        _tidy(ex)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, format=_format(path))
    plt.close(fig)
    return bool(points)


def _reward_limits(values: np.ndarray, keep: np.ndarray) -> tuple[float, float]:
    """y-range for rewards: all of them unless a few lie far below the bulk (then those are pinned to the edge).

    keep: values that must stay in view whatever (the moving average).
    """
    lo, hi = float(values.min()), float(values.max())
    q25, q75 = np.percentile(values, [25, 75])
    floor = q25 - 3.0 * max(q75 - q25, 1e-3 * max(abs(hi), 1.0))
    if lo < floor and np.mean(values < floor) < 0.2:  # outliers, not a second population
        lo = min(floor, float(keep.min()))
    span = max(hi - lo, 1e-6)
    return lo - 0.04 * span, hi + 0.06 * span


def _format(dest) -> str:
    """The file format for ``dest``: its suffix (png, pdf, svg) for a path, png for a file object."""
    suffix = Path(dest).suffix.lower().lstrip(".") if isinstance(dest, (str, Path)) else ""
    return suffix if suffix in ("pdf", "svg") else "png"


def _tidy(ax) -> None:
    ax.grid(True, color="#e6e6e6", lw=0.6)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def plot_significance(comparisons: Sequence[Mapping[str, Any] | Any], path: str | os.PathLike | IO[bytes], *,
                      subtitle: str | None = None) -> None:
    """A significance test at a glance: one panel per comparison (candidate vs baseline) with its paired per-seed
    differences (candidate minus baseline) as dots, the 95% t interval of their mean as a bar with the mean
    marked, zero as the reference line, and the verdict with its Holm p as coloured text. Each panel has its own
    x-range (always including zero): the question per panel is on which side of zero the interval lies, and a
    clearly worse candidate would otherwise squash every small gain into a dot.

    comparisons: ``search.analysis.stats.Comparison`` objects or their ``to_dict()`` records (``diffs``, ``mean_diff``,
    ``ci_low``, ``ci_high``, ``verdict``, ``wilcoxon_p_holm``, ``n``, ...), drawn top to bottom in that order;
    subtitle: a line under the title (e.g. the seeds and the split). path: PNG destination. Raises ``ValueError``
    when there is no comparison.
    """
    rows = [c.to_dict() if hasattr(c, "to_dict") else dict(c) for c in comparisons]
    if not rows:
        raise ValueError("no comparisons to plot")
    # the subtitle (a study's changed child settings can run to hundreds of characters) wrapped to the figure's
    # width: a line wider than the figure is cut at both edges
    sublines = textwrap.wrap(subtitle, SUBTITLE_CHARS, break_on_hyphens=False) if subtitle else []
    head = 0.5 + 0.2 * len(sublines)  # inches for the title lines; 0.45 more for the x label at the bottom
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, head + 0.45 + 1.05 * len(rows)), squeeze=False,
                             layout="constrained")  # lays out the two-line suptitle and per-panel titles
    for ax, row in zip(axes[:, 0], rows):
        color = VERDICT_COLORS.get(row.get("verdict"), NO_VERDICT_COLOR)
        diffs = np.asarray([v for v in row.get("diffs") or [] if v is not None], dtype=np.float64)
        values = [0.0] + diffs.tolist()
        ax.axvline(0, color="#333333", lw=1.0, zorder=1)
        if row.get("ci_low") is not None and row.get("ci_high") is not None:
            ax.plot([row["ci_low"], row["ci_high"]], [0, 0], color=color, lw=9, alpha=0.35, solid_capstyle="butt",
                    zorder=2)
            values += [row["ci_low"], row["ci_high"]]
        if diffs.size:  # spread over the panel's height in seed order, so equal differences (ties) stay visible
            offsets = np.linspace(-0.32, 0.32, diffs.size) if diffs.size > 1 else np.zeros(1)
            ax.scatter(diffs, offsets, s=18, color="#55626e", alpha=0.85, lw=0, zorder=3)
        if row.get("mean_diff") is not None:
            ax.plot([row["mean_diff"]], [0], marker="|", ms=22, mew=2.4, color=color, zorder=4)
        lo, hi = min(values), max(values)
        pad = 0.08 * (hi - lo) if hi > lo else 1e-3
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(-0.5, 0.5)
        ax.set_yticks([])
        holm = row.get("wilcoxon_p_holm")
        p_text = "" if holm is None else f", Holm p {format_p(holm)}"
        ax.set_title(textwrap.shorten(f"{row.get('candidate')}  vs  {row.get('baseline')}", 70, placeholder="..."),
                     loc="left", fontsize=9.5, family="monospace")
        ax.set_title(f"{row.get('verdict', 'no evidence')}{p_text}, {row.get('n', diffs.size)} seeds", loc="right",
                     fontsize=9.5, color=color, fontweight="normal" if color == NO_VERDICT_COLOR else "bold")
        _tidy(ax)
        ax.spines["left"].set_visible(False)
        ax.grid(False, axis="y")
    axes[-1, 0].set_xlabel("candidate minus baseline, per seed (each panel its own scale; the line is zero)",
                           fontsize=9)
    title = "paired differences per seed (dots), 95% t interval of their mean (bar, | = mean)"
    fig.suptitle("\n".join([title, *sublines]), fontsize=10.5)
    fig.savefig(path, dpi=DPI, format=_format(path))
    plt.close(fig)


# ---------------------------------------------------------------- pictures of a run

def plot_ranked(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike | IO[bytes], rewards: Any = None) -> None:
    """``plot_functions`` of ranked rows (``search.analysis.ranking.displayed``: ``text``, ``rank``, ``reward``,
    ``display``), each titled ``#rank (reward) simplest text``; rewards: the run's ``RewardSettings`` (a named or
    minimised metric is shown as that metric)."""
    from search.analysis.formatting import metric_rows, shows_metric

    name = f"{rewards.metric} " if shows_metric(rewards) else ""
    plot_functions([r["text"] for r in rows], path,
                   titles=[f"#{r['rank']} ({name}{'-' if r['reward'] is None else format(r['reward'], '.4f')}) "
                           f"{r['display']}" for r in metric_rows(rows, rewards, ("reward",))])


def plot_comparisons(comparisons: Sequence[Any], path: str | os.PathLike | IO[bytes], subtitle: str,
                     rewards: Any = None, show=None) -> None:
    """``plot_significance`` of a study's comparisons in the units of ``rewards.metric``, each candidate named as
    ``show`` (default ``search.analysis.formatting.display_text``) shows it."""
    from search.analysis.formatting import display_text
    from search.analysis.significance import metric_comparisons

    show = show or display_text
    plot_significance([dict(c, candidate=show(c["candidate"])) for c in metric_comparisons(comparisons, rewards)],
                      path, subtitle=subtitle)


def plot_run_progress(store: Any, path: str | os.PathLike | IO[bytes], rewards=None) -> bool:
    """``plot_progress`` of a run store: every candidate's reward and the controller's updates; whether it drew the
    entropy panel. rewards: the run's ``RewardSettings`` (a minimised metric's rewards are minus the metric: the axis
    says so)."""
    from search.analysis.formatting import shows_metric

    label = "reward"
    if shows_metric(rewards):
        label = f"reward = -{rewards.metric} (higher is better)" if rewards.minimize else f"reward = {rewards.metric}"
    course = store.course()  # index, status, reward, finished_at: no candidate's proposal or metrics decoded
    return plot_progress([reward for _, _, reward, _ in course], store.updates(), path, label,
                  stopped=[status == "stopped" for _, status, _, _ in course])
