// The dashboard's page: polls api/state and api/history every second and draws the
// plots as SVG. No libraries, no network beyond its own server.
"use strict";

const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
const svgNS = "http://www.w3.org/2000/svg";
let updates = 0;

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(x, digits) {
  if (x === undefined || x === null || Number.isNaN(x)) return "–";
  return Number(x).toFixed(digits === undefined ? 1 : digits);
}

// niceStep returns a tick step, in ms, that puts at most about six ticks on span ms.
function niceStep(span) {
  for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400]) {
    if (span / (s * 1000) <= 6) return s * 1000;
  }
  return 86400000;
}

function clockTime(t) {
  return new Date(t).toLocaleTimeString([], { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function svgEl(tag, attrs, text) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// plot draws series ({name, points: [[t, y]], color, kind: "line" | "area" | "dashed",
// step}) into the svg with id, against clock time (x, labelled) and a y axis labelled
// with unit. "area" fills under the line; step draws each value until the next point,
// as counts are.
function plot(id, series, unit) {
  const svg = document.getElementById(id);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 600, H = 200, L = 44, R = 10, T = 18, B = 30;
  let t0 = Infinity, t1 = -Infinity, y1 = 0, n = 0;
  for (const s of series) for (const [t, y] of s.points) {
    t0 = Math.min(t0, t); t1 = Math.max(t1, t); y1 = Math.max(y1, y); n++;
  }
  svg.setAttribute("data-points", String(n));
  svg.setAttribute("data-series", String(series.length));
  if (n === 0) {
    svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
    return;
  }
  if (t1 === t0) t1 = t0 + 1000;
  y1 = y1 <= 0 ? 1 : y1 * 1.1;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = v => H - B - v / y1 * (H - T - B);
  // The y axis: three grid lines, labelled, and the unit.
  for (const frac of [0, 0.5, 1]) {
    svg.appendChild(svgEl("line", { class: "axis", x1: L, x2: W - R, y1: y(y1 * frac), y2: y(y1 * frac) }));
    svg.appendChild(svgEl("text", { x: L - 4, y: y(y1 * frac) + 3, "text-anchor": "end" },
      y1 * frac >= 100 ? Math.round(y1 * frac) : (y1 * frac).toFixed(1)));
  }
  svg.appendChild(svgEl("text", { class: "unit", x: 2, y: 10, "text-anchor": "start" }, unit));
  // The x axis: clock time, ticks on whole multiples of a nice step.
  const step = niceStep(t1 - t0);
  let ticks = 0;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    svg.appendChild(svgEl("line", { class: "tick", x1: x(t), x2: x(t), y1: T, y2: H - B + 3 }));
    if (x(t) > W - R - 22) continue; // its label would be cut at the edge
    svg.appendChild(svgEl("text", { class: "time", x: x(t), y: H - B + 13, "text-anchor": "middle" }, clockTime(t)));
    ticks++;
  }
  svg.setAttribute("data-time-ticks", String(ticks));
  svg.appendChild(svgEl("text", { class: "time", x: W - R, y: H - 2, "text-anchor": "end" },
    `time (last ${Math.round((t1 - t0) / 1000)} s)`));
  const path = s => {
    const pts = [];
    s.points.forEach(([t, v], i) => {
      if (s.step && i > 0) pts.push([x(t), y(s.points[i - 1][1])]);
      pts.push([x(t), y(v)]);
    });
    return pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ");
  };
  // Areas first, so that the lines drawn over them stay visible.
  const order = series.map((s, i) => [s, i]).sort((a, b) => (a[0].kind === "area" ? 0 : 1) - (b[0].kind === "area" ? 0 : 1));
  for (const [s, i] of order) {
    if (s.points.length === 0) continue;
    const color = s.color || palette[i % palette.length];
    if (s.kind === "area") {
      const first = s.points[0][0], last = s.points[s.points.length - 1][0];
      svg.appendChild(svgEl("polygon", { class: "area", fill: color,
        points: `${x(first).toFixed(1)},${y(0)} ${path(s)} ${x(last).toFixed(1)},${y(0)}` }));
    }
    const pl = svgEl("polyline", { points: path(s), stroke: color, class: s.kind || "line", "data-series": s.name });
    pl.appendChild(svgEl("title", {}, s.name));
    svg.appendChild(pl);
  }
  let legend = svg.parentNode.querySelector(".legend");
  if (!legend) { legend = el("div", { class: "legend" }); svg.parentNode.appendChild(legend); }
  legend.replaceChildren(...series.map((s, i) => {
    const sp = el("span", { class: "key " + (s.kind || "line") });
    const sw = el("span", { class: "swatch" });
    sw.style.borderColor = s.color || palette[i % palette.length];
    if (s.kind === "area") sw.style.background = s.color || palette[i % palette.length];
    sp.append(sw, document.createTextNode(s.name));
    return sp;
  }));
}

function drawHistory(h) {
  const pts = h.points || [];
  const names = kind => [...new Set(pts.flatMap(p => Object.keys(p[kind] || {})))].sort();
  const targets = names("targets"), routes = names("routes");
  const rep = [];
  targets.forEach((name, i) => {
    const color = palette[i % palette.length];
    const at = pts.filter(p => p.targets[name]);
    // Current: a filled step area; desired: a dashed step line in a darker shade over
    // it, so the two read apart even when they are equal.
    rep.push({ name: name + " current", color, kind: "area", step: true,
      points: at.map(p => [p.t, Math.max(p.targets[name].current, 0)]) });
    rep.push({ name: name + " desired", color: desiredColor(color), kind: "dashed", step: true,
      points: at.filter(p => p.targets[name].desired >= 0).map(p => [p.t, p.targets[name].desired]) });
  });
  plot("plot-replicas", rep, "replicas");
  plot("plot-rps", routes.map(r => ({ name: r, points: pts.filter(p => p.routes[r]).map(p => [p.t, p.routes[r].rps]) })), "req/s");
  plot("plot-p99", routes.map(r => ({ name: r, points: pts.filter(p => p.routes[r]).map(p => [p.t, p.routes[r].p99_ms]) })), "ms");
  const models = names("models");
  const perModel = field => models.map(m => ({ name: m, points: pts.filter(p => p.models && p.models[m]).map(p => [p.t, p.models[m][field]]) }));
  if (models.length > 0) {
    plot("plot-tokens", perModel("tokens_per_s"), "tokens/s");
    plot("plot-ttft", perModel("ttft_p99_ms"), "ms");
    plot("plot-cost", perModel("cost_per_min"), "per min");
  }
  const counters = names("counters");
  plot("plot-rejected", counters.map(c => {
    const series = [];
    for (let i = 1; i < pts.length; i++) {
      const a = pts[i - 1], b = pts[i];
      if (a.counters[c] === undefined || b.counters[c] === undefined || b.t <= a.t) continue;
      series.push([b.t, Math.max(b.counters[c] - a.counters[c], 0) / ((b.t - a.t) / 1000)]);
    }
    return { name: c, points: series };
  }), "per s");
}

// desiredColor darkens a "#rrggbb" colour by 45%.
function desiredColor(hex) {
  const n = parseInt(hex.slice(1), 16);
  const ch = sh => Math.round(((n >> sh) & 255) * 0.55).toString(16).padStart(2, "0");
  return "#" + ch(16) + ch(8) + ch(0);
}

function table(id, head, rows) {
  const t = document.getElementById(id);
  const tr = el("tr");
  head.forEach(h => tr.appendChild(el("th", {}, h)));
  const body = rows.map(r => {
    const row = el("tr");
    r.forEach(c => row.appendChild(el("td", {}, String(c))));
    return row;
  });
  if (body.length === 0) {
    const row = el("tr");
    row.appendChild(el("td", { colspan: head.length, class: "muted" }, "none yet"));
    body.push(row);
  }
  t.replaceChildren(tr, ...body);
}

// scopeTitle names a scope's table: "Routes" for route, the name itself for others.
function scopeTitle(scope) {
  const known = { route: "Routes", model: "Models", tenant: "Tenants", backend: "Backends", target: "Targets", ttfb: "Time to first byte, per route" };
  return known[scope] || "Scope " + scope;
}

function countersDiv() {
  const div = el("div", { class: "scope" });
  div.appendChild(el("h2", {}, "Counters"));
  div.appendChild(el("table", { id: "counters" }));
  return div;
}

function drawState(s) {
  document.title = s.title;
  document.getElementById("title").textContent = s.title;
  document.getElementById("clock").textContent = clockTime(s.time) + ` · figures over the last ${s.span_seconds} s`;
  document.getElementById("targets").replaceChildren(...s.targets.map(t => {
    const c = el("div", { class: "card", "data-target": t.name });
    c.appendChild(el("div", { class: "name" }, t.name));
    c.appendChild(el("div", { class: "big" }, `${t.current < 0 ? "?" : t.current} → ${t.desired < 0 ? "?" : t.desired}`));
    c.appendChild(el("div", { class: "muted" }, `current → desired, bounds ${t.min}…${t.max}`));
    return c;
  }));
  const keyRows = ks => ks.map(k => [k.key, fmt(k.rps), fmt(100 * k.error_rate) + "%", fmt(k.p99_ms), k.in_flight, k.rejected]);
  const head = ["key", "req/s", "errors", "p99 ms", "in flight", "rejected"];
  const hasModels = (s.models || []).length > 0;
  document.querySelectorAll(".models-only").forEach(e => { e.style.display = hasModels ? "" : "none"; });
  const scopes = document.getElementById("scopes");
  const tables = s.scopes.map(sc => {
    const div = el("div", { class: "scope", "data-scope": sc.scope });
    const title = el("h2", {}, scopeTitle(sc.scope) + " ");
    title.appendChild(el("span", { class: "muted" },
      sc.total > sc.keys.length ? `busiest ${sc.keys.length} of ${sc.total}, by req/s` : `${sc.total}, by req/s`));
    div.appendChild(title);
    div.appendChild(el("table", { id: "scope-" + sc.scope }));
    return div;
  });
  if (hasModels) {
    const div = el("div", { class: "scope", "data-scope": "models" });
    div.appendChild(el("h2", {}, "Models"));
    div.appendChild(el("table", { id: "models" }));
    tables.unshift(div);
  }
  scopes.replaceChildren(...tables, countersDiv());
  s.scopes.forEach(sc => table("scope-" + sc.scope, head, keyRows(sc.keys)));
  if (hasModels) {
    table("models", ["model", "req/s", "tokens/s", "TTFT p99 ms", "errors", "in flight", "rejected", "cost/min"],
      s.models.map(m => [m.key, fmt(m.rps), fmt(m.tokens_per_s, 0), fmt(m.ttft_p99_ms), fmt(100 * m.error_rate) + "%", m.in_flight, m.rejected, fmt(m.cost_per_min, 4)]));
  }
  table("counters", ["counter", "total"], Object.entries(s.counters).sort().map(([k, v]) => [k, v]));
  document.getElementById("decisions").replaceChildren(...s.decisions.map(d => {
    const li = el("li");
    li.appendChild(el("span", { class: "muted" }, clockTime(d.time) + " "));
    li.appendChild(el("strong", {}, d.target + " "));
    li.appendChild(el("span", { class: d.direction }, `${d.current} → ${d.desired} `));
    li.appendChild(el("span", {}, `${d.why}${d.reason ? ": " + d.reason : ""}${d.error ? " (" + d.error + ")" : ""}`));
    if (d.steps && d.steps.length) {
      li.appendChild(el("div", { class: "steps" }, d.steps.map(st => `${st.name} ${st.before}→${st.after}${st.note ? " (" + st.note + ")" : ""}`).join("; ")));
    }
    return li;
  }));
  document.getElementById("refused-count").textContent = `(${s.refused} in all)`;
  document.getElementById("policy-errors").textContent = `policy errors: ${s.policy_errors}` +
    (s.last_policy_error ? ` (last: ${s.last_policy_error})` : "");
  document.getElementById("refusals").replaceChildren(...s.refusals.map(r => {
    const li = el("li", { class: "refused" });
    li.appendChild(el("span", { class: "muted" }, clockTime(r.time) + " "));
    li.appendChild(el("strong", {}, r.kind + " "));
    li.appendChild(el("span", {}, `${r.why}: ${r.error}`));
    return li;
  }));
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [state, history] = await Promise.all([
      fetch("api/state", { cache: "no-store" }).then(r => r.json()),
      fetch("api/history", { cache: "no-store" }).then(r => r.json()),
    ]);
    drawState(state);
    drawHistory(history);
    updates++;
    document.body.setAttribute("data-updates", String(updates));
    // What overflows the page's width, for tests: long keys must wrap, not widen it.
    const wide = [...document.querySelectorAll("main td, main li, .legend")]
      .filter(e => e.scrollWidth > e.clientWidth + 2)
      .map(e => e.textContent.slice(0, 40));
    for (const t of document.querySelectorAll("main table")) {
      if (t.getBoundingClientRect().right > t.parentNode.getBoundingClientRect().right + 2) wide.push(t.id);
    }
    if (document.documentElement.scrollWidth > window.innerWidth) wide.push("the page");
    document.body.setAttribute("data-overflow", wide.join(" | "));
    status.textContent = "live";
    status.className = "status ok";
  } catch (e) {
    status.textContent = "disconnected: " + e.message;
    status.className = "status err";
  }
}

refresh();
setInterval(refresh, 1000);
