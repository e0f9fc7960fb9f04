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

// plot draws series ({name, points: [[t, y]], dashed, color}) into the svg with id.
function plot(id, series) {
  const svg = document.getElementById(id);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 600, H = 200, L = 44, R = 8, T = 8, B = 20;
  let t0 = Infinity, t1 = -Infinity, y1 = 0, n = 0;
  for (const s of series) for (const [t, y] of s.points) {
    t0 = Math.min(t0, t); t1 = Math.max(t1, t); y1 = Math.max(y1, y); n++;
  }
  svg.setAttribute("data-points", String(n));
  svg.setAttribute("data-series", String(series.length));
  if (n === 0) {
    const txt = document.createElementNS(svgNS, "text");
    txt.setAttribute("x", W / 2); txt.setAttribute("y", H / 2); txt.setAttribute("text-anchor", "middle");
    txt.textContent = "no data yet";
    svg.appendChild(txt);
    return;
  }
  if (t1 === t0) t1 = t0 + 1000;
  y1 = y1 <= 0 ? 1 : y1 * 1.1;
  const x = t => L + (t - t0) / (t1 - t0) * (W - L - R);
  const y = v => H - B - v / y1 * (H - T - B);
  for (const frac of [0, 0.5, 1]) {
    const line = document.createElementNS(svgNS, "line");
    line.setAttribute("class", "axis");
    line.setAttribute("x1", L); line.setAttribute("x2", W - R);
    line.setAttribute("y1", y(y1 * frac)); line.setAttribute("y2", y(y1 * frac));
    svg.appendChild(line);
    const label = document.createElementNS(svgNS, "text");
    label.setAttribute("x", L - 4); label.setAttribute("y", y(y1 * frac) + 3); label.setAttribute("text-anchor", "end");
    label.textContent = y1 * frac >= 100 ? Math.round(y1 * frac) : (y1 * frac).toFixed(1);
    svg.appendChild(label);
  }
  const span = document.createElementNS(svgNS, "text");
  span.setAttribute("x", W - R); span.setAttribute("y", H - 4); span.setAttribute("text-anchor", "end");
  span.textContent = `last ${Math.round((t1 - t0) / 1000)} s`;
  svg.appendChild(span);
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const pl = document.createElementNS(svgNS, "polyline");
    pl.setAttribute("points", s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
    pl.setAttribute("stroke", s.color || palette[i % palette.length]);
    if (s.dashed) pl.setAttribute("class", "desired");
    const title = document.createElementNS(svgNS, "title");
    title.textContent = s.name;
    pl.appendChild(title);
    svg.appendChild(pl);
  });
  let legend = svg.parentNode.querySelector(".legend");
  if (!legend) { legend = el("div", { class: "legend" }); svg.parentNode.appendChild(legend); }
  legend.replaceChildren(...series.filter(s => !s.dashed).map((s, i) => {
    const sp = el("span", {}, "■ " + s.name);
    sp.style.color = s.color || palette[i % palette.length];
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
    rep.push({ name: name, color, points: pts.filter(p => p.targets[name]).map(p => [p.t, Math.max(p.targets[name].current, 0)]) });
    rep.push({ name: name + " desired", color, dashed: true, points: pts.filter(p => p.targets[name]).map(p => [p.t, Math.max(p.targets[name].desired, 0)]) });
  });
  plot("plot-replicas", rep);
  plot("plot-rps", routes.map(r => ({ name: r, points: pts.filter(p => p.routes[r]).map(p => [p.t, p.routes[r].rps]) })));
  plot("plot-p99", routes.map(r => ({ name: r, points: pts.filter(p => p.routes[r]).map(p => [p.t, p.routes[r].p99_ms]) })));
  const models = names("models");
  const perModel = field => models.map(m => ({ name: m, points: pts.filter(p => p.models && p.models[m]).map(p => [p.t, p.models[m][field]]) }));
  if (models.length > 0) {
    plot("plot-tokens", perModel("tokens_per_s"));
    plot("plot-ttft", perModel("ttft_p99_ms"));
    plot("plot-cost", perModel("cost_per_min"));
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
  }));
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

function drawState(s) {
  document.title = s.title;
  document.getElementById("title").textContent = s.title;
  document.getElementById("clock").textContent = new Date(s.time).toLocaleTimeString() + ` · figures over the last ${s.span_seconds} s`;
  document.getElementById("targets").replaceChildren(...s.targets.map(t => {
    const c = el("div", { class: "card", "data-target": t.name });
    c.appendChild(el("div", { class: "name" }, t.name));
    c.appendChild(el("div", { class: "big" }, `${t.current < 0 ? "?" : t.current} → ${t.desired < 0 ? "?" : t.desired}`));
    c.appendChild(el("div", { class: "muted" }, `current → desired, bounds ${t.min}…${t.max}`));
    return c;
  }));
  const keyRows = ks => ks.map(k => [k.key, fmt(k.rps), fmt(100 * k.error_rate) + "%", fmt(k.p99_ms), k.in_flight, k.rejected]);
  const head = ["key", "req/s", "errors", "p99 ms", "in flight", "rejected"];
  table("routes", head, keyRows(s.routes));
  table("backends", head, keyRows(s.backends));
  const hasModels = (s.models || []).length > 0;
  document.querySelectorAll(".models-only").forEach(e => { e.style.display = hasModels ? "" : "none"; });
  table("models", ["model", "req/s", "tokens/s", "TTFT p99 ms", "errors", "in flight", "rejected", "cost/min"],
    (s.models || []).map(m => [m.key, fmt(m.rps), fmt(m.tokens_per_s, 0), fmt(m.ttft_p99_ms), fmt(100 * m.error_rate) + "%", m.in_flight, m.rejected, fmt(m.cost_per_min, 4)]));
  table("counters", ["counter", "total"], Object.entries(s.counters).sort().map(([k, v]) => [k, v]));
  document.getElementById("decisions").replaceChildren(...s.decisions.map(d => {
    const li = el("li");
    li.appendChild(el("span", { class: "muted" }, new Date(d.time).toLocaleTimeString() + " "));
    li.appendChild(el("strong", {}, d.target + " "));
    li.appendChild(el("span", { class: d.direction }, `${d.current} → ${d.desired} `));
    li.appendChild(el("span", {}, `${d.why}${d.reason ? ": " + d.reason : ""}${d.error ? " (" + d.error + ")" : ""}`));
    if (d.steps && d.steps.length) {
      li.appendChild(el("div", { class: "steps" }, d.steps.map(st => `${st.name} ${st.before}→${st.after}${st.note ? " (" + st.note + ")" : ""}`).join("; ")));
    }
    return li;
  }));
  document.getElementById("refused-count").textContent = `(${s.refused} in all)`;
  document.getElementById("refusals").replaceChildren(...s.refusals.map(r => {
    const li = el("li", { class: "refused" });
    li.appendChild(el("span", { class: "muted" }, new Date(r.time).toLocaleTimeString() + " "));
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
    status.textContent = "live";
    status.className = "status ok";
  } catch (e) {
    status.textContent = "disconnected: " + e.message;
    status.className = "status err";
  }
}

refresh();
setInterval(refresh, 1000);
