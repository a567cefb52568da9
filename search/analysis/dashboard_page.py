"""The dashboard's one page: HTML, CSS and a small script that polls ``/api/runs`` and ``/api/run?name=`` every
``POLL_MS`` and draws every picture as inline SVG. No library, no network: the page works offline.

Pictures, not tables: run cards (state, children done / budget, best so far, ETA), the best-so-far curves of every
run on one plot, the chosen run's course (reward per child, best so far), the controller's entropy, children stopped
per rung, its best functions as small multiples of their shapes (f and f' on [-5, 5], framed in the colour of their
reward; hover for the formula, reward and seeds), and each significance study as a forest plot. Errors the script
meets are listed in ``#errors`` (the browser test reads it).
"""
from __future__ import annotations

POLL_MS = 2000

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d2327; background: #f6f7f9; }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; background: #1f2d3a; color: #fff; }
header h1 { font-size: 18px; margin: 0; } header .muted { color: #b8c4cf; }
main { padding: 12px 20px; max-width: 1500px; }
h2 { font-size: 15px; margin: 18px 0 6px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 10px; }
.card { background: #fff; border: 1px solid #d9dee3; border-radius: 8px; padding: 10px 12px; cursor: pointer; }
.card.sel { border-color: #1f5fa8; box-shadow: 0 0 0 2px #1f5fa833; }
.card .name { font-weight: 600; overflow-wrap: anywhere; }
.state { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; color: #fff; margin-left: 6px; }
.running { background: #1f7a45; } .finished { background: #1f5fa8; } .stopped { background: #8a6d1a; }
.new { background: #6b7580; } .re-trained { background: #1f5fa8; } .re-training, .confirming { background: #1f7a45; }
.damaged { background: #b3261e; }
.bar { height: 6px; background: #e6e9ec; border-radius: 3px; margin: 6px 0; }
.bar div { height: 6px; background: #1f5fa8; border-radius: 3px; }
.math { font-family: "STIX Two Math", "Cambria Math", "Latin Modern Math", Georgia, serif; font-size: 15px; }
.small { font-size: 12px; color: #5f6b76; }
.panel { background: #fff; border: 1px solid #d9dee3; border-radius: 8px; padding: 8px 10px; margin: 8px 0; }
.row { display: flex; flex-wrap: wrap; gap: 10px; } .row > .panel { flex: 1 1 420px; min-width: 0; }
.shapes { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 8px; }
.shape { background: #fff; border: 3px solid #ccc; border-radius: 8px; padding: 4px 6px; }
.shape .math { font-size: 13px; overflow-wrap: anywhere; min-height: 2.6em; }
svg { display: block; width: 100%; height: auto; } svg text { font: 11px system-ui, sans-serif; fill: #444; }
#errors { color: #b3261e; white-space: pre-wrap; }
"""

_SCRIPT = r"""
const POLL = __POLL__;
const errors = [];
function fail(msg) { errors.push(String(msg)); document.getElementById('errors').textContent = errors.join('\n'); }
window.addEventListener('error', e => fail(e.message));
const esc = s => String(s ?? '').replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
const fmt = (v, d = 4) => v == null ? '-' : Number(v).toFixed(d);
function dur(s) { if (s == null) return '-'; s = Math.round(s); return s < 90 ? s + ' s' : s < 5400 ?
  Math.round(s / 60) + ' min' : (s / 3600).toFixed(1) + ' h'; }
let chosen = decodeURIComponent((location.hash.match(/run=([^&]*)/) || [])[1] || '');
let refreshes = 0;
const COLORS = ['#1f5fa8', '#c0392b', '#1e7b45', '#8e44ad', '#d9622b', '#16a085', '#7f8c8d', '#b7950b'];
const VERDICT = {better: '#1e7b45', worse: '#b3261e'};

function scale(lo, hi, a, b) { if (!(hi > lo)) { lo -= 1; hi += 1; } return v => a + (v - lo) * (b - a) / (hi - lo); }
function extent(vals) { const f = vals.filter(v => v != null && isFinite(v)); return f.length ? [Math.min(...f),
  Math.max(...f)] : [0, 1]; }
function axes(w, h, m, xl, yl, xlab, ylab) {
  return `<line x1="${m.l}" y1="${h - m.b}" x2="${w - m.r}" y2="${h - m.b}" stroke="#999"/>` +
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${h - m.b}" stroke="#999"/>` +
    `<text x="${m.l}" y="${h - 4}">${esc(xl[0])}</text><text x="${w - m.r}" y="${h - 4}" text-anchor="end">${esc(xl[1])}</text>` +
    `<text x="${w / 2}" y="${h - 4}" text-anchor="middle">${esc(xlab)}</text>` +
    `<text x="${m.l - 4}" y="${h - m.b}" text-anchor="end">${esc(yl[0])}</text>` +
    `<text x="${m.l - 4}" y="${m.t + 8}" text-anchor="end">${esc(yl[1])}</text>` +
    `<text x="4" y="${m.t - 4}">${esc(ylab)}</text>`;
}
function path(points, sx, sy) {
  let d = '', pen = false;
  for (const [x, y] of points) { if (y == null || !isFinite(y)) { pen = false; continue; }
    d += (pen ? 'L' : 'M') + sx(x).toFixed(1) + ' ' + sy(y).toFixed(1); pen = true; }
  return d;
}

function stepped(points) {  // a best-so-far curve as steps: it holds its value until the next point
  return points.flatMap((p, j) => j ? [[p[0], points[j - 1][1]], p] : [p]);
}

function measure(r) { return r.metric + (r.lower ? ' (lower is better)' : ''); }
function wide() { return Math.max(640, Math.round(document.getElementById('run').clientWidth || 1300)); }

function compareSvg(runs) {
  const w = wide(), h = 260, m = {l: 56, r: 170, t: 16, b: 22};
  const scored = runs.filter(r => r.curve && r.curve.length);
  if (!scored.length) return '<p class="small">no rewards yet</p>';
  const axis = r => measure(r) + ', ' + r.task;  // a synthetic similarity and an accuracy are not one scale
  const count = {}; scored.forEach(r => { count[axis(r)] = (count[axis(r)] || 0) + 1; });
  const shared = Object.keys(count).sort((a, b) => count[b] - count[a])[0];  // one axis: the most runs' measure
  const withCurve = scored.filter(r => axis(r) === shared), apart = scored.filter(r => axis(r) !== shared);
  const xs = withCurve.flatMap(r => r.curve.map(p => p[0])), ys = withCurve.flatMap(r => r.curve.map(p => p[1]));
  const [x0, x1] = extent(xs.concat([0])), [y0, y1] = extent(ys);
  const sx = scale(x0, x1, m.l, w - m.r), sy = scale(y0, y1, h - m.b, m.t);
  let s = axes(w, h, m, [x0, x1], [fmt(y0, 3), fmt(y1, 3)], 'candidate index', 'best so far: ' + shared);
  withCurve.forEach((r, i) => { const c = COLORS[i % COLORS.length];
    s += `<path d="${path(stepped(r.curve), sx, sy)}" fill="none" stroke="${c}" stroke-width="2"><title>${esc(r.name)}</title></path>`;
    s += `<text x="${w - m.r + 8}" y="${m.t + 14 * i + 8}" style="fill:${c}">${esc(r.name.slice(0, 24))}</text>`; });
  const note = apart.length ? `<p class="small">not drawn here (another measure or task): ${apart.map(r =>
    esc(r.name) + ' (' + esc(axis(r)) + ')').join(', ')}</p>` : '';
  return `<svg id="compare" viewBox="0 0 ${w} ${h}">${s}</svg>${note}`;
}

function courseSvg(run) {
  const w = 640, h = 250, m = {l: 56, r: 10, t: 16, b: 22};
  const pts = run.course.filter(c => c[1] != null), scored = pts.filter(c => c[2] === 'ok' || c[2] === 'stopped');
  if (!pts.length) return '<p class="small">no rewards yet</p>';
  const [x0, x1] = extent(run.course.map(c => c[0]).concat([0]));
  let [y0, y1] = extent((scored.length ? scored : pts).map(c => c[1]));  // a failed child's penalty sets no scale
  const sorted = (scored.length ? scored : pts).map(c => c[1]).sort((a, b) => a - b);
  if (!run.lower) { const floor = sorted[Math.floor(sorted.length * 0.05)];  // far-worse values pinned to the edge
    if (floor > y0 && y1 > floor) y0 = floor - 0.05 * (y1 - floor); }
  else { const ceil = sorted[Math.ceil(sorted.length * 0.95) - 1];
    if (ceil < y1 && ceil > y0) y1 = ceil + 0.05 * (ceil - y0); }
  const sx = scale(x0, x1, m.l, w - m.r), sy = scale(y0, y1, h - m.b, m.t);
  const r = pts.length > 300 ? 1.6 : 2.8;
  let s = axes(w, h, m, [x0, x1], [fmt(y0, 3), fmt(y1, 3)], 'candidate index', measure(run));
  for (const [i, v, st] of pts) { const cx = sx(i).toFixed(1);
    if (st === 'ok') s += `<circle class="child" cx="${cx}" cy="${sy(Math.min(Math.max(v, y0), y1)).toFixed(1)}" r="${r}" ` +
      `fill="#7a8a99" fill-opacity="0.65"><title>#${i} ${fmt(v)}</title></circle>`;
    else if (st === 'stopped') s += `<circle class="child" cx="${cx}" cy="${sy(Math.min(Math.max(v, y0), y1)).toFixed(1)}" ` +
      `r="${r}" fill="none" stroke="#d9622b" stroke-width="1"><title>#${i} stopped early at a rung: ${fmt(v)} there</title></circle>`;
    else { const cy = (h - m.b - 3).toFixed(1);  // diverged, failed, timed out: a mark on the axis, not a score
      s += `<path class="child" d="M${(+cx - 2.5).toFixed(1)},${(+cy - 2.5).toFixed(1)}l5,5m0,-5l-5,5" stroke="#b3261e" ` +
        `stroke-width="1.2"><title>#${i} ${st}</title></path>`; } }
  s += `<path d="${path(stepped(run.course.map(c => [c[0], c[3]])), sx, sy)}" fill="none" stroke="#c0392b" ` +
    `stroke-width="2"/>`;
  return `<svg id="course" viewBox="0 0 ${w} ${h}">${s}</svg>`;
}

function entropySvg(run) {
  if (!run.entropy.length) return '<p class="small">no controller entropy (this proposer does not learn a policy)</p>';
  const w = 640, h = 150, m = {l: 56, r: 10, t: 16, b: 22};
  const [x0, x1] = extent(run.entropy.map(e => e[0])), [y0, y1] = extent(run.entropy.map(e => e[1]));
  const sx = scale(x0, x1, m.l, w - m.r), sy = scale(y0, y1, h - m.b, m.t);
  return `<svg id="entropy" viewBox="0 0 ${w} ${h}">${axes(w, h, m, [x0, x1], [fmt(y0, 2), fmt(y1, 2)],
    'candidate index', 'policy entropy (nats)')}<path d="${path(run.entropy, sx, sy)}" fill="none" stroke="#6c3fa0" ` +
    `stroke-width="1.6"/></svg>`;
}

function rungsSvg(run) {
  const stopped = Object.entries(run.rungs.stopped);
  if (!stopped.length) return '';
  const w = 640, rowH = 22, h = 20 + rowH * (stopped.length + 1), total = run.rungs.children || 1;
  const steps = run.rungs.steps || [];
  const bars = [...stopped.map(([k, n]) => ['stopped at rung ' + (+k + 1) + (steps[+k] != null ? ' (' + steps[+k] + ' steps)' : ''), n]),
    ['not stopped early', total - stopped.reduce((a, [, n]) => a + n, 0)]];
  let s = '';
  bars.forEach(([label, n], i) => { const y = 10 + i * rowH, bw = (w - 290) * n / total;
    s += `<text x="4" y="${y + 14}">${esc(label)}</text><rect x="220" y="${y + 3}" width="${bw.toFixed(1)}" ` +
      `height="14" fill="${i < stopped.length ? '#d9622b' : '#1f5fa8'}"/><text x="${226 + bw}" y="${y + 14}">${n}</text>`; });
  return `<div class="panel"><b>early stopping</b>: children per rung <span class="small">(not stopped early: trained ` +
    `to the end, diverged or failed)</span><svg id="rungs" viewBox="0 0 ${w} ${h}" style="max-width:${w}px">${s}</svg></div>`;
}

function shapeColor(t) {  // low reward: grey-blue, high: deep green
  const a = [120, 138, 160], b = [20, 130, 70];
  return `rgb(${a.map((v, i) => Math.round(v + (b[i] - v) * t)).join(',')})`;
}
function shapesHtml(run) {
  if (!run.shapes.length) return '<p class="small">no trained child yet</p>';
  const [r0, r1] = extent(run.shapes.map(s => s.reward));
  return '<div class="shapes" id="shapes">' + run.shapes.map(f => {
    const w = 180, h = 110, m = {l: 4, r: 4, t: 4, b: 4};
    const vals = f.f.concat(f.df).filter(v => v != null).sort((a, b) => a - b);
    let lo = Math.min(0, vals[Math.floor(vals.length * 0.01)] ?? -1), hi = Math.max(0, vals[Math.ceil(vals.length * 0.99) - 1] ?? 1);
    if (hi - lo < 2) { const mid = (hi + lo) / 2; lo = mid - 1; hi = mid + 1; }
    const sx = scale(-5, 5, m.l, w - m.r), sy = scale(lo, hi, h - m.b, m.t);
    const clip = v => v == null ? null : Math.min(hi, Math.max(lo, v));
    const studies = [...new Set(f.retrained.map(t => t.study))];
    const seeds = studies.map(k => `\nre-trained in study ${k}: ` + f.retrained.filter(t => t.study === k)
      .map(t => `seed ${t.seed}: ${fmt(t.score)}`).join(', ')).join('');
    const early = f.status === 'stopped' ? ` stopped early${f.stopped_at != null ? ' at step ' + f.stopped_at : ''}` : '';
    const hover = `#${f.rank} ${f.readable}${f.equals ? '  = ' + f.equals : ''}\n${run.metric} ${fmt(f.reward)} ` +
      `(the search's child, seed ${f.seed}${early})${seeds}`;
    const t = r1 > r0 ? (run.lower ? r1 - f.reward : f.reward - r0) / (r1 - r0) : 1;
    return `<div class="shape" style="border-color:${shapeColor(t)}" title="${esc(hover)}">` +
      `<div class="small">#${f.rank} &middot; ${fmt(f.reward)}${early ? ' &middot;' + esc(early) : ''}` +
      `${f.equals ? ' &middot; = ' + esc(f.equals) : ''}</div>` +
      `<div class="math">${f.typeset}</div><svg viewBox="0 0 ${w} ${h}">` +
      `<line x1="${m.l}" x2="${w - m.r}" y1="${sy(0)}" y2="${sy(0)}" stroke="#bbb"/>` +
      `<line y1="${m.t}" y2="${h - m.b}" x1="${sx(0)}" x2="${sx(0)}" stroke="#bbb"/>` +
      `<path d="${path(f.x.map((x, i) => [x, clip(f.df[i])]), sx, sy)}" fill="none" stroke="#d9622b" stroke-dasharray="3 2" stroke-width="1.3"/>` +
      `<path class="f" d="${path(f.x.map((x, i) => [x, clip(f.f[i])]), sx, sy)}" fill="none" stroke="#1f5fa8" stroke-width="2"/>` +
      `</svg></div>`; }).join('') + '</div>';
}

function forestSvg(study, i) {
  const lower = study.comparisons.some(r => r.lower);
  const rows = study.comparisons, w = wide(), rowH = 30, m = {l: Math.min(380, Math.round(w * 0.4)), r: 210, t: 10, b: 40},
    h = m.t + m.b + rowH * rows.length, chars = Math.floor((m.l - 12) / 6.4);  // what a label's column holds
  const vals = rows.flatMap(r => [r.low, r.high, r.mean]).concat([0]);
  const [x0, x1] = extent(vals), pad = 0.08 * (x1 - x0 || 1);
  const sx = scale(x0 - pad, x1 + pad, m.l, w - m.r);
  let s = `<line x1="${sx(0)}" x2="${sx(0)}" y1="${m.t}" y2="${h - m.b}" stroke="#333"/>` +
    `<text x="${(m.l + w - m.r) / 2}" y="${h - 4}" text-anchor="middle">candidate minus baseline${lower ? ' in ' + esc(study.comparisons[0].metric) + ', lower is better' : ''} (mean and 95% interval; the line is zero)</text>` +
    `<line x1="${m.l}" x2="${w - m.r}" y1="${h - m.b + 4}" y2="${h - m.b + 4}" stroke="#999"/>` +
    `<text x="${m.l}" y="${h - 22}">${fmt(x0 - pad, 3)}</text><text x="${w - m.r}" y="${h - 22}" text-anchor="end">${fmt(x1 + pad, 3)}</text>`;
  rows.forEach((r, j) => { const y = m.t + j * rowH + rowH / 2, c = VERDICT[r.verdict] || '#5f6b76';
    const label = r.candidate + (r.equals ? ' (= ' + r.equals + ')' : '') + '  vs  ' + r.baseline;
    s += `<text x="${m.l - 8}" y="${y + 4}" text-anchor="end">${esc(label.length > chars ? label.slice(0, chars - 1) + '\u2026' : label)}` +
      `<title>${esc(label)}</title></text>`;
    if (r.low != null && r.high != null) s += `<line class="ci" x1="${sx(r.low)}" x2="${sx(r.high)}" y1="${y}" y2="${y}" stroke="${c}" stroke-width="8" stroke-opacity="0.4"/>`;
    if (r.mean != null) s += `<circle cx="${sx(r.mean)}" cy="${y}" r="5" fill="${c}"/>`;
    s += `<text x="${w - m.r + 8}" y="${y + 4}" style="fill:${c};font-weight:600">${esc(r.verdict)}` +
      `${r.p != null ? ', Holm p ' + fmt(r.p, 3) : ''}, ${r.n ?? '-'} seeds</text>`; });
  const sub = [study.seeds + ' seeds', (study.split || '?') + ' split', ...(study.overrides || [])].join('; ');
  return `<div class="panel"><b>${study.confirmation ? "the run's confirmation" : 'significance test'}</b> ` +
    `<span class="small">${esc(sub)}</span>` +
    `<svg class="forest" id="forest-${i}" viewBox="0 0 ${w} ${h}">${s}</svg></div>`;
}

function cards(runs) {
  return runs.map(r => { const pct = r.budget ? Math.min(100, 100 * r.done / r.budget) : 0;
    const best = r.best ? `<div class="math">${r.best.typeset}${r.best.equals ? ' <span class="small">= ' + esc(r.best.equals) + '</span>' : ''}</div>` +
      `<div class="small">best ${esc(r.metric)} ${fmt(r.best.reward)}</div>` : '<div class="small">no reward yet</div>';
    const body = r.state === 'damaged' ? `<div class="small">${esc(r.error)}</div>` :
      !r.proposals && r.retrainings ? `<div class="small"><span class="done">${r.retrainings}</span> re-trainings of ` +
        `named functions, no search</div>` :
      `<div class="bar"><div style="width:${pct.toFixed(1)}%"></div></div><div class="small">` +
      `<span class="done">${r.done}</span> / ${r.budget ?? '?'} children` +
      `${r.running ? ', ' + r.running + (r.state === 'running' ? ' in flight' : ' left open') : ''}${r.per_minute ? ', ' + r.per_minute.toFixed(1) + '/min' : ''}` +
      `${r.eta_s != null ? ', ETA ' + dur(r.eta_s) : ''}${r.state === 're-training' ? '; ' + r.retrainings +
        ' re-trainings stored (a significance test or table holds the run)' : ''}${r.state === 'confirming' ? '; ' +
        r.retrainings + ' re-trainings of its confirmation stored' : ''}</div>${best}`;
    return `<div class="card ${r.name === chosen ? 'sel' : ''}" data-run="${esc(r.name)}"><span class="name">${esc(r.name)}</span>` +
      `<span class="state ${r.state}">${r.state}</span>${body}</div>`; }).join('');
}

async function getJson(url) { const res = await fetch(url, {cache: 'no-store'});
  if (!res.ok) throw new Error(url + ': HTTP ' + res.status); return res.json(); }

let timer = null, busy = false;
async function refresh() {
  clearTimeout(timer); busy = true;
  try {
    const runs = await getJson('/api/runs');
    if (!runs.length) {
      document.getElementById('cards').innerHTML = '<p class="small">no run here yet: one started with ' +
        '<code>actsearch run CONFIG --results FOLDER</code> in a watched folder appears here as it starts</p>';
      document.getElementById('run').innerHTML = ''; document.getElementById('compare-panel').style.display = 'none';
      refreshes += 1; document.body.dataset.refreshes = refreshes; busy = false; timer = setTimeout(refresh, POLL);
      return;
    }
    if (!runs.some(r => r.name === chosen)) chosen = (runs.find(r => r.state === 'running') || runs.find(r => r.state !== 'damaged') || runs[0]).name;
    document.getElementById('cards').innerHTML = cards(runs);
    document.getElementById('compare-panel').style.display = runs.length > 1 ? '' : 'none';
    if (runs.length > 1) document.getElementById('compare-box').innerHTML = compareSvg(runs);
    const run = await getJson('/api/run?name=' + encodeURIComponent(chosen));
    const box = document.getElementById('run');
    if (run.state === 'damaged') box.innerHTML = `<h2>${esc(run.name)}</h2><p>damaged: ${esc(run.error)}</p>`;
    else box.innerHTML = `<h2>${esc(run.name)}: the course of the search</h2><div class="row"><div class="panel">` +
      `<b>${esc(run.metric)} per child</b> <span class="small">(grey: trained in full; hollow orange: stopped early, ` +
      `its score at the rung; red &times; on the axis: diverged or failed; red line: best so far of those trained in ` +
      `full)</span>${courseSvg(run)}</div>` +
      `<div class="panel"><b>controller</b>${entropySvg(run)}</div></div>${rungsSvg(run)}` +
      `<h2>best functions <span class="small">f (blue) and f&prime; (orange, dashed) on [&minus;5, 5], betas at 1; ` +
      `frame colour: ${esc(measure(run))}; hover for the formula, score and seeds</span></h2>${shapesHtml(run)}` +
      (run.significance.length ? '<h2>significance</h2>' + run.significance.map(forestSvg).join('') : '');
    refreshes += 1;
    document.body.dataset.refreshes = refreshes;
    document.getElementById('stamp').textContent = 'updated ' + new Date().toLocaleTimeString() + ' (every ' + POLL / 1000 + ' s)';
  } catch (e) { fail(e.message || e); }
  busy = false; timer = setTimeout(refresh, POLL);
}
document.addEventListener('click', e => { const card = e.target.closest('.card'); if (!card) return;
  chosen = card.dataset.run; location.hash = 'run=' + encodeURIComponent(chosen);
  if (!busy) refresh(); });  // the chosen run at once, not at the next poll
refresh();
"""


def page_html(title: str = "actsearch dashboard") -> str:
    """The dashboard's page; its script reads the JSON endpoints of the server that serves it."""
    from html import escape

    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f'<style>{_CSS}</style></head><body data-refreshes="0"><header><h1>{escape(title)}</h1>'
            f'<span class="muted" id="stamp">loading</span></header><main><div id="errors"></div>'
            f'<h2>runs</h2><div class="cards" id="cards"></div>'
            f'<div id="compare-panel" class="panel" style="display:none"><b>best so far, every run</b>'
            f'<div id="compare-box"></div></div><div id="run"></div></main>'
            f'<script>{_SCRIPT.replace("__POLL__", str(POLL_MS))}</script></body></html>\n')
