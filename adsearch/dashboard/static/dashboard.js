/* adsearch dashboard: fills each page from its /api/... JSON and refreshes it in place.
 *
 * No library: charts are SVG strings drawn here. A section's HTML is replaced only when it
 * changed, so a live page neither reloads nor flickers. Everything is served by the
 * package (no network at run time). docs/dashboard.md says what each page shows. */
"use strict";

const app = document.getElementById("app");
const POLL_MS = Number(app.dataset.pollMs || 2000);
const COLORS = ["#1f6feb", "#e8590c", "#2f9e44", "#ae3ec9", "#d6336c", "#0c8599", "#5c940d"];

/* ------------------------------------------------------------------ helpers */
function esc(v) {
  return String(v == null ? "" : v).replace(/[&<>"']/g,
    (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function num(v, d = 4) { return v == null || !isFinite(v) ? "-" : Number(v).toFixed(d); }
function secs(v) {
  if (v == null || !isFinite(v)) return "-";
  v = Math.max(0, v);
  if (v < 120) return v.toFixed(0) + "s";
  if (v < 7200) return (v / 60).toFixed(1) + "m";
  return (v / 3600).toFixed(1) + "h";
}
function when(iso) { return iso ? esc(iso.replace("T", " ").slice(0, 19)) : "-"; }
function stateTag(s) { return `<span class="state state-${esc(s)}">${esc(s)}</span>`; }
function searchUrl(n) { return "/search/" + encodeURIComponent(n); }
function trialUrl(n, t) { return searchUrl(n) + "/trial/" + encodeURIComponent(t); }
function table(cols, rows, cls = "") {
  const head = cols.map((c) => `<th class="${c.num ? "num" : ""}">${esc(c.label)}</th>`).join("");
  const body = rows.map((r) => "<tr>" + r.map((v, i) =>
    `<td class="${cols[i].num ? "num" : ""}">${v}</td>`).join("") + "</tr>").join("");
  return `<table class="${cls}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

const shown = {};
/* Replace section `id`'s HTML only when it changed (no flicker on refresh). */
function setSection(id, html) {
  let el = document.getElementById(id);
  if (!el) {
    el = document.createElement("section");
    el.id = id;
    app.appendChild(el);
  }
  if (shown[id] !== html) {
    shown[id] = html;
    el.innerHTML = html;
  }
}
function banner(msg) {
  const b = document.getElementById("banner");
  if (msg) { b.textContent = msg; b.hidden = false; } else { b.hidden = true; b.textContent = ""; }
}
async function getJSON(url) {
  const r = await fetch(url, {cache: "no-store"});
  let data = null;
  try { data = await r.json(); } catch (e) { data = {error: `bad answer from ${url}`}; }
  if (!r.ok) throw new Error((data && data.error) || `${url}: HTTP ${r.status}`);
  return data;
}

/* ------------------------------------------------------------------ charts (SVG) */
function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; lo = lo - 1e-9; }
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}
function fmtTick(v) {
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}
/* series: [{label, points: [[x, y]...], color, dashed, dots, step}] */
function lineChart(id, series, opt = {}) {
  const W = opt.width || 560, H = opt.height || 260, L = 56, R = 12, T = 14, B = 36;
  const pts = series.flatMap((s) => s.points).filter((p) => p[1] != null && isFinite(p[1]));
  if (!pts.length) {
    return `<p class="muted" id="${id}-empty">${esc(opt.empty || "nothing to draw yet")}</p>`;
  }
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (opt.zero) { y0 = Math.min(0, y0); y1 = Math.max(0, y1); }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= Math.abs(y0) * 0.05 || 1; y1 += Math.abs(y1) * 0.05 || 1; }
  const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  let g = "";
  for (const t of ticks(y0, y1)) {
    g += `<line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eef0f3"/>` +
         `<text x="${L - 6}" y="${sy(t) + 4}" text-anchor="end">${fmtTick(t)}</text>`;
  }
  for (const t of ticks(x0, x1, 6)) {
    g += `<text x="${sx(t)}" y="${H - B + 16}" text-anchor="middle">${fmtTick(t)}</text>`;
  }
  g += `<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#98a2b3"/>`;
  g += `<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#98a2b3"/>`;
  if (opt.zero && y0 < 0 && y1 > 0) {
    g += `<line x1="${L}" x2="${W - R}" y1="${sy(0)}" y2="${sy(0)}" stroke="#475467"/>`;
  }
  g += `<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle">${esc(opt.xlabel || "")}</text>`;
  g += `<text x="12" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 12 ${(T + H - B) / 2})">${esc(opt.ylabel || "")}</text>`;
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const p = s.points.filter((q) => q[1] != null && isFinite(q[1]));
    if (!p.length) return;
    if (s.dots) {
      g += p.map((q) => `<circle class="dot" cx="${sx(q[0]).toFixed(1)}" cy="${sy(q[1]).toFixed(1)}" r="${s.r || 2.5}" fill="${color}" fill-opacity="${s.opacity || 0.55}"/>`).join("");
      return;
    }
    let d = `M${sx(p[0][0]).toFixed(1)},${sy(p[0][1]).toFixed(1)}`;
    for (let k = 1; k < p.length; k++) {
      if (s.step) d += `H${sx(p[k][0]).toFixed(1)}`;
      d += `L${sx(p[k][0]).toFixed(1)},${sy(p[k][1]).toFixed(1)}`;
    }
    g += `<path class="series" data-label="${esc(s.label)}" d="${d}" fill="none" stroke="${color}" stroke-width="2" ${s.dashed ? 'stroke-dasharray="5 4"' : ""}/>`;
  });
  const legend = series.map((s, i) => `<span><i style="background:${s.color || COLORS[i % COLORS.length]}"></i>${esc(s.label)}</span>`).join("");
  return `<svg id="${id}" class="chart" data-points="${pts.length}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(opt.title || "")}">${g}</svg><div class="legend">${legend}</div>`;
}
/* bars: [{label, value, lo, hi, color}] */
function barChart(id, bars, opt = {}) {
  const W = opt.width || Math.max(420, 70 * bars.length + 80), H = opt.height || 280;
  const L = 56, R = 12, T = 14, B = 80;
  const vals = bars.flatMap((b) => [b.value, b.lo, b.hi]).filter((v) => v != null && isFinite(v));
  if (!vals.length) return `<p class="muted">nothing to draw yet</p>`;
  let y0 = Math.min(0, ...vals), y1 = Math.max(0, ...vals);
  if (y1 === y0) y1 = y0 + 1;
  const pad = (y1 - y0) * 0.08; y0 -= pad; y1 += pad;
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const bw = (W - L - R) / bars.length;
  let g = "";
  for (const t of ticks(y0, y1)) {
    g += `<line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eef0f3"/>` +
         `<text x="${L - 6}" y="${sy(t) + 4}" text-anchor="end">${fmtTick(t)}</text>`;
  }
  bars.forEach((b, i) => {
    const x = L + i * bw + bw * 0.2, w = bw * 0.6, v = b.value == null ? 0 : b.value;
    g += `<rect class="bar" x="${x.toFixed(1)}" y="${Math.min(sy(v), sy(0)).toFixed(1)}" width="${w.toFixed(1)}" height="${Math.abs(sy(v) - sy(0)).toFixed(1)}" fill="${b.color || COLORS[0]}"/>`;
    if (b.lo != null && b.hi != null) {
      const cx = x + w / 2;
      g += `<path d="M${cx},${sy(b.lo)}V${sy(b.hi)}M${cx - 5},${sy(b.lo)}H${cx + 5}M${cx - 5},${sy(b.hi)}H${cx + 5}" stroke="#1d2330"/>`;
    }
    const lx = L + i * bw + bw / 2;
    g += `<text x="${lx}" y="${H - B + 12}" text-anchor="end" transform="rotate(-35 ${lx} ${H - B + 12})">${esc(b.label)}</text>`;
  });
  g += `<line x1="${L}" x2="${W - R}" y1="${sy(0)}" y2="${sy(0)}" stroke="#475467"/>`;
  g += `<text x="12" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 12 ${(T + H - B) / 2})">${esc(opt.ylabel || "")}</text>`;
  return `<svg id="${id}" class="chart" data-points="${bars.length}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${g}</svg>`;
}
/* One drawn panel of a mask: rows of "#" (dropped) and "." (kept), as one SVG path. */
function maskSvg(rows, px) {
  const h = rows.length, w = h ? rows[0].length : 0;
  let d = "";
  rows.forEach((row, y) => {
    for (let x = 0; x < row.length; x++) if (row[x] === "#") d += `M${x},${y}h1v1h-1z`;
  });
  return `<svg class="mask" width="${w * px}" height="${h * px}" viewBox="0 0 ${w} ${h}" shape-rendering="crispEdges"><rect width="${w}" height="${h}" fill="#fff"/><path d="${d}" fill="#1d2330"/></svg>`;
}
function masksHtml(sites) {
  return sites.map((s) => {
    const px = Math.max(2, Math.floor(96 / Math.max(...s.shape)));
    return `<figure>${s.panels.map((p) => maskSvg(p, px)).join("")}<figcaption>site ${s.site}: ${s.shape[0]}x${s.shape[1]}, drops ${(100 * s.drop_fraction).toFixed(0)}%</figcaption></figure>`;
  }).join("");
}
/* Best so far over full-budget results: [[x, best]] at each point of `series`. */
function bestSoFar(series, xkey) {
  let best = null;
  const out = [];
  for (const p of series) {
    if (p.full && p.reward != null && (best == null || p.reward > best)) best = p.reward;
    if (best != null) out.push([xkey(p), best]);
  }
  return out;
}

/* ------------------------------------------------------------------ pages */
async function pageSearches() {
  const rows = await getJSON("/api/searches");
  const body = rows.map((r) => [
    `<input type="checkbox" name="s" value="${esc(r.search)}">`,
    `<a class="search-link" href="${searchUrl(r.search)}">${esc(r.search)}</a>` +
      (r.controller === "fixed" ? ` <a href="/verify/${encodeURIComponent(r.search)}">(verify report)</a>` : ""),
    esc(r.task || "-"), esc(r.space || "-"), esc(r.controller || "-"),
    stateTag(r.state) + (r.error ? `<div class="bad">${esc(r.error)}</div>` : ""),
    r.drawn == null ? "-" : `${r.drawn} / ${r.finished}`,
    r.best ? `${num(r.best.reward)} <span class="muted">(trial ${r.best.trial_id})</span>` : "-",
    when(r.started), r.eta_s == null ? "-" : secs(r.eta_s),
  ]);
  const cols = [{label: ""}, {label: "search"}, {label: "task"}, {label: "space"},
    {label: "controller"}, {label: "state"}, {label: "trials drawn / finished", num: true},
    {label: "best full-budget reward", num: true}, {label: "started (UTC)"}, {label: "ETA", num: true}];
  setSection("s-head", `<h1>Searches</h1><p class="muted">${rows.length} search(es)</p>`);
  setSection("s-table", rows.length
    ? `<form action="/compare" method="get">${table(cols, body, "searches")}<button type="submit">compare the checked searches side by side</button></form>`
    : `<p>no searches yet: start one with <code>adsearch start</code></p>`);
}

async function pageSearch() {
  const name = app.dataset.name;
  const [s, x] = await Promise.all([getJSON(`/api/search/${encodeURIComponent(name)}`),
    getJSON(`/api/search/${encodeURIComponent(name)}/extra`)]);
  document.title = `${name} - adsearch dashboard`;
  const c = s.counts, cfg = s.config, b = s.budget;
  const alive = s.daemon.alive;
  const daemon = alive ? `daemon pid ${s.daemon.pid}` : alive == null
    ? "no run directory: daemon state unknown" : "no daemon running";
  const frac = cfg.budget_trials ? Math.min(1, b.finished / cfg.budget_trials) : null;
  const prog = frac == null ? "" : `<div><span class="bar"><span style="width:${(100 * frac).toFixed(1)}%"></span></span> ${b.drawn} / ${cfg.budget_trials} trials drawn, ${b.finished} finished</div>`;
  const rc = s.recheck || {};
  setSection("s-head", `<h1 id="search-name">${esc(s.search)} ${stateTag(s.state)}</h1>
    <p>${esc(daemon)}; task <b>${esc(cfg.task)}</b> (${esc(cfg.space)}), controller <b>${esc(cfg.controller)}</b>, batch ${esc(cfg.batch_size)}, seed ${esc(cfg.seed)}</p>
    ${prog}
    <p>trials: ${c.done || 0} done, ${c.running || 0} running, ${c.queued || 0} queued, ${c.failed || 0} failed, ${c.stale || 0} stale;
    stage: ${esc(s.stage)}; ${b.trials_per_hour ? b.trials_per_hour.toFixed(1) + " trials/hour; " : ""}ETA ${secs(rc.left && rc.done_eta_s != null ? rc.done_eta_s : b.eta_s)}${s.best ? `; best full-budget reward <b id="best-reward">${num(s.best.reward)}</b> (<a href="${trialUrl(name, s.best.trial_id)}">trial ${s.best.trial_id}</a>)` : ""}</p>
    ${x.verify ? `<p><a href="/verify/${encodeURIComponent(name)}">verify report</a></p>` : ""}
    ${(s.waiting || []).map((w) => `<p class="warn">waiting: ${esc(w)}</p>`).join("")}`);
  // best so far over time, every result as a dot
  const t0 = x.series;
  const charts = lineChart("chart-best", [
    {label: "each result", points: t0.map((p) => [p.t / 60, p.reward]), dots: true, color: "#98a2b3"},
    {label: "best so far (full budget)", points: bestSoFar(t0, (p) => p.t / 60), step: true, color: COLORS[0]},
  ], {xlabel: "minutes since the search was created", ylabel: "reward", title: "best so far",
      empty: "no result yet"});
  const ups = s.updates || [];
  const dots = ups.flatMap((u) => (u.rewards || []).map((r) => [u.version, r]));
  const learned = lineChart("chart-learned", [
    {label: "learned reward of each trial", points: dots, dots: true, color: COLORS[1]},
    {label: "batch mean", points: ups.map((u) => [u.version, u.mean]), color: COLORS[0]},
    {label: "baseline", points: ups.map((u) => [u.version, u.baseline]), dashed: true, color: COLORS[2]},
  ], {xlabel: "controller version (one batch per update)", ylabel: "reward",
      empty: "no controller update yet"});
  setSection("s-charts", `<div class="grid"><div><h2>Best so far over time</h2>${charts}</div>
    <div><h2>Learned reward of each controller batch</h2>${learned}</div></div>`);
  // rungs
  const rungs = s.rungs;
  let rungHtml = "";
  if (rungs && rungs.scheduler == null) rungHtml = `<p class="warn">${esc(rungs.note)}</p>`;
  else if (rungs) {
    rungHtml = table(["epochs", "reached", "threshold", "promoted", "stopped", "best", "rank agreement with the full budget"].map((l, i) => ({label: l, num: i < 6})),
      rungs.rungs.map((r) => [r.rung, r.reached, r.top ? "full budget" : num(r.threshold), r.top ? "-" : r.promoted,
        r.top ? "-" : r.stopped, num(r.best),
        r.top || !r.agreement ? "-" : `Spearman ${r.agreement.spearman == null ? "-" : r.agreement.spearman.toFixed(2)}, Kendall ${r.agreement.kendall == null ? "-" : r.agreement.kendall.toFixed(2)} (n=${r.agreement.n})${r.off ? ' <span class="warn">pruning off</span>' : ""}`]), "rungs");
  }
  setSection("s-rungs", rungs ? `<h2>Rungs (${esc(rungs.scheduler || "none")})</h2>${rungHtml}` : "");
  // top patterns drawn at their real map sides
  const top = (s.top || []).map((r) => [`<a href="${trialUrl(name, r.trial_id)}">${r.trial_id}</a>`, num(r.reward),
    r.recheck ? `${num(r.recheck.mean)} (n=${r.recheck.n})` : "-", r.controller_version, num(r.seconds, 1)]);
  const drawn = x.masks.map((m) => `<div class="masks card"><b>trial ${m.trial_id}</b> reward ${num(m.reward)}<br>${m.maps_source ? `<span class="muted">maps: ${esc(m.maps_source)}</span><br>` : ""}${m.error ? `<span class="warn">${esc(m.error)}</span>` : masksHtml(m.sites)}</div>`).join("");
  setSection("s-top", `<h2>Top patterns</h2>${top.length ? table([{label: "trial"}, {label: "reward", num: true}, {label: "re-check mean", num: true}, {label: "ctrl v", num: true}, {label: "seconds", num: true}], top, "top") : '<p class="muted">no full-budget result yet</p>'}
    <div class="grid">${drawn}</div>`);
  // running children
  const run = (s.running || []).map((r) => [`<a href="${trialUrl(name, r.trial_id)}">${r.trial_id}</a>`,
    esc(r.worker ? r.worker.replace(/^worker-/, "").replace(/-\d+$/, "") : "this host"),
    esc(r.slot_name || r.slot), esc(r.pid), r.attempts, secs(r.elapsed_s)]);
  setSection("s-running", `<h2>Running children (${run.length})</h2>${run.length ? table(["trial", "host", "slot", "pid", "attempt", "elapsed"].map((l) => ({label: l})), run, "running") : '<p class="muted">none</p>'}`);
  const bad = s.bad_patterns || {};
  setSection("s-bad", `<h2>Bad patterns and errors</h2><p>${bad.count || 0} bad pattern(s); ${s.refused || 0} refused by the drop cap; ${s.cache_hits || 0} cache hit(s)</p>${bad.last_error ? `<pre class="log">last error: ${esc(bad.last_error)}</pre>` : ""}`);
  const trials = x.trials.map((t) => [`<a class="trial-link" href="${trialUrl(name, t.trial_id)}">${t.trial_id}</a>`,
    stateTag(t.state), esc(t.purpose), t.controller_version, t.seed, num(t.reward) + ({stopped: ' <span class="muted">(stopped at a rung)</span>', bad: ' <span class="warn">(bad pattern)</span>'}[t.kind] || ""), num(t.seconds, 1)]);
  setSection("s-trials", `<h2>Latest trials</h2>${table(["trial", "state", "purpose", "ctrl v", "seed", "reward", "seconds"].map((l, i) => ({label: l, num: i >= 3})), trials, "trials")}`);
  const ev = x.events.slice().reverse().map((e) => [when(e.at), esc(e.kind), esc(e.message)]);
  setSection("s-events", `<h2>Event log (latest ${ev.length})</h2>${table([{label: "at (UTC)"}, {label: "kind"}, {label: "message"}], ev, "events")}`);
}

async function pageTrial() {
  const name = app.dataset.name, id = app.dataset.trial;
  const base = `/api/search/${encodeURIComponent(name)}/trial/${encodeURIComponent(id)}`;
  const [d, x] = await Promise.all([getJSON(base), getJSON(base + "/extra")]);
  const t = d.trial, r = d.result;
  setSection("t-head", `<h1 id="trial-title">trial ${t.id} of <a href="${searchUrl(name)}">${esc(name)}</a> ${stateTag(t.state)}</h1>
    <p>purpose ${esc(t.purpose)}, controller version ${t.controller_version}, seed ${t.seed}, attempts ${t.attempts}, slot ${esc(t.slot)}, pid ${esc(t.pid)}</p>
    <p>reward <b>${r ? num(r.reward) : "-"}</b>; learned reward ${num(d.learned_reward)}${r && r.cache_of ? `; cache of trial ${r.cache_of}` : ""}${r ? `; ${num(r.seconds, 1)} s` : ""}</p>
    ${t.error ? `<pre class="log bad">${esc(t.error)}</pre>` : ""}`);
  const metrics = r ? Object.entries(r.metrics || {}).map(([k, v]) => [esc(k), typeof v === "number" ? num(v) : esc(JSON.stringify(v))]) : [];
  setSection("t-metrics", metrics.length ? `<h2>Metrics</h2>${table([{label: "metric"}, {label: "value", num: true}], metrics)}` : "");
  setSection("t-pattern", `<h2>Pattern</h2><p class="muted">maps: ${esc(d.site_maps ? d.site_maps.source : "-")}</p><div class="masks">${x.masks_error ? `<p class="warn">${esc(x.masks_error)}</p>` : masksHtml(x.masks)}</div>
    <pre class="log">${esc(JSON.stringify(t.pattern))}</pre>`);
  const curve = (r && r.curve) || [];
  const xk = curve.length && "epoch" in curve[0] ? "epoch" : "step";
  const keys = curve.length ? Object.keys(curve[0]).filter((k) => k !== xk && typeof curve[0][k] === "number") : [];
  const valKeys = keys.filter((k) => k.startsWith("val")).length ? keys.filter((k) => k.startsWith("val")) : keys;
  setSection("t-curve", `<h2>Learning curve</h2>${lineChart("chart-curve", valKeys.map((k) => ({label: k, points: curve.map((p, i) => [xk in p ? p[xk] : i + 1, p[k]])})), {xlabel: xk, ylabel: "value", empty: "no learning curve"})}`);
  setSection("t-rungs", `<h2>Rung values</h2>${x.rungs.length ? table(["rung", "epoch", "value", "threshold", "decision"].map((l) => ({label: l, num: l !== "decision"})),
    x.rungs.map((g) => [g.rung, g.epoch, num(g.value), num(g.threshold), g.promoted == null ? "-" : g.promoted ? "promoted" : "stopped"])) : '<p class="muted">none (no early stopping, or not reached)</p>'}`);
  setSection("t-log", `<h2>Log</h2>${x.log_tail ? `<p class="muted">${esc(x.log_tail.path)} (last ${x.log_tail.lines.length} lines)</p><pre class="log" id="log-tail">${esc(x.log_tail.lines.join("\n"))}</pre>` : `<p class="muted">no local log${d.logs.length ? ": " + esc(d.logs.join(", ")) : ""}</p>`}`);
}

function ci(dd) {
  if (!dd || !dd.n) return "-";
  if (dd.n < 2) return `${dd.mean >= 0 ? "+" : ""}${dd.mean.toPrecision(4)} (n=1)`;
  const f = (v) => (v >= 0 ? "+" : "") + v.toPrecision(3);
  return `${f(dd.mean)} [${f(dd.lo)}, ${f(dd.hi)}]${dd.significant ? " *" : ""}`;
}
async function pageVerify() {
  const name = app.dataset.name;
  const v = await getJSON(`/api/verify/${encodeURIComponent(name)}`);
  const prog = Object.entries(v.progress).map(([stage, st]) => [esc(stage), esc(Object.entries(st).map(([k, n]) => `${n} ${k}`).join(", "))]);
  setSection("v-head", `<h1>verify <a href="${searchUrl(name)}">${esc(name)}</a></h1>${table([{label: "stage"}, {label: "runs"}], prog)}${v.note ? `<p class="muted">${esc(v.note)}</p>` : ""}`);
  const rep = v.report;
  if (!rep) { setSection("v-table", ""); setSection("v-chart", ""); return; }
  const ms = (s) => (s ? `${s.mean.toPrecision(4)} ± ${s.std.toPrecision(2)}` : "-");
  const rows = rep.regularizers.map((r) => [esc(r.label), esc(r.role), ms(r.val), ms(r.test), ci(r.vs_none), ci(r.vs_best_baseline), r.runs.length + (r.failed.length ? ` (${r.failed.length} failed)` : "")]);
  setSection("v-table", `<h2>${esc(rep.metric)} on test over seeds ${esc(rep.seeds.join(", "))} (${rep.lower_is_better ? "lower" : "higher"} is better; * = 95% CI excludes 0)</h2>
    ${table([{label: "regularizer"}, {label: "role"}, {label: "val reward", num: true}, {label: rep.metric, num: true}, {label: "Δ vs none [95% CI]", num: true}, {label: `Δ vs ${rep.best_baseline || "best baseline"} [95% CI]`, num: true}, {label: "n", num: true}], rows, "verify")}
    <p class="muted">${esc(rep.selection)}</p>`);
  const color = {none: "#98a2b3", pattern: COLORS[0], baseline: COLORS[1]};
  const bars = rep.regularizers.filter((r) => r.vs_none).map((r) => ({label: r.label, value: r.vs_none.mean, lo: r.vs_none.n > 1 ? r.vs_none.lo : null, hi: r.vs_none.n > 1 ? r.vs_none.hi : null, color: color[r.role] || COLORS[2]}));
  setSection("v-chart", `<h2>Paired difference against none (95% CI)</h2>${barChart("chart-verify", bars, {ylabel: "Δ " + rep.metric})}`);
}

async function pageCompare() {
  const names = JSON.parse(app.dataset.names || "[]");
  if (!names.length) {
    setSection("c-head", `<h1>Compare searches</h1><p>check two or more searches on <a href="/">the searches page</a>, or open <code>/compare?s=A&amp;s=B</code></p>`);
    return;
  }
  const q = names.map((n) => "s=" + encodeURIComponent(n)).join("&");
  const d = await getJSON("/api/compare?" + q);
  setSection("c-head", `<h1>Compare ${d.searches.map((s) => `<a href="${searchUrl(s.search)}">${esc(s.search)}</a>`).join(", ")}</h1>`);
  const rows = d.searches.map((s) => [`<a href="${searchUrl(s.search)}">${esc(s.search)}</a>`, esc(s.config.controller), esc(s.config.task), esc(s.config.space), stateTag(s.state), `${s.budget.drawn} / ${s.budget.finished}`, s.config.budget_trials == null ? "-" : s.config.budget_trials, s.best ? num(s.best.reward) : "-"]);
  setSection("c-table", table(["search", "controller", "task", "space", "state", "drawn / finished", "budget (trials)", "best full-budget reward"].map((l, i) => ({label: l, num: i >= 5})), rows, "compare"));
  const series = d.searches.map((s, i) => ({label: `${s.search} (${s.config.controller})`, points: bestSoFar(s.series, (p) => p.n), step: true, color: COLORS[i % COLORS.length]}));
  setSection("c-chart", `<h2>Best so far (full budget) against the search's own finished trials</h2>${lineChart("chart-compare", series, {xlabel: "finished trials", ylabel: "best so far", width: 760, height: 320, empty: "no result yet"})}`);
}

/* ------------------------------------------------------------------ live loop */
const PAGES = {searches: pageSearches, search: pageSearch, trial: pageTrial, verify: pageVerify, compare: pageCompare};
async function tick() {
  const live = document.getElementById("live");
  try {
    await PAGES[app.dataset.page]();
    banner(null);
    live.textContent = "live: updated " + new Date().toLocaleTimeString();
    app.dataset.loaded = "1";
  } catch (e) {
    banner(String(e.message || e));
    live.textContent = "live: last try failed " + new Date().toLocaleTimeString();
    app.dataset.loaded = "error";
  }
  setTimeout(tick, POLL_MS);
}
tick();
