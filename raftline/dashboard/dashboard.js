// The raftline dashboard's page script: every second it fetches /state.json,
// swaps in the panels the server rendered from it, and draws the two charts
// from the history as inline SVG. No libraries and nothing from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 560, HEIGHT = 170, LEFT = 44, RIGHT = 8, TOP = 22, BOTTOM = 20;
const CHARTS = [
  {id: "chart-throughput", series: [
    {key: "applied_per_s", label: "entries applied/s", color: "#0969da"},
    {key: "client_ops_per_s", label: "client ops/s", color: "#1a7f37"}]},
  {id: "chart-latency", series: [
    {key: "p50_ms", label: "p50", color: "#8250df"},
    {key: "p99_ms", label: "p99", color: "#cf222e"}]},
];

function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A round upper bound for the y axis: 1, 2 or 5 times a power of ten.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

function format(value) {
  if (value === null || value === undefined) return "–";
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

// The x axis spans the history held, from a minute up to the server's window.
function span(points, windowSeconds, now) {
  const held = points.length ? now - points[0].time : 0;
  return Math.min(windowSeconds, Math.max(60, Math.ceil(held / 60) * 60));
}

function draw(chart, points, seconds, now) {
  const svg = document.getElementById(chart.id);
  svg.replaceChildren();
  const values = points.flatMap((p) => chart.series.map((s) => p[s.key])).filter((v) => v !== null);
  const top = niceMax(Math.max(0, ...values));
  const x = (t) => LEFT + (WIDTH - LEFT - RIGHT) * (1 - (now - t) / seconds);
  const y = (v) => HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * (v / top);
  svg.append(element("line", {class: "axis", x1: LEFT, y1: y(0), x2: WIDTH - RIGHT, y2: y(0)}));
  svg.append(element("line", {class: "axis", x1: LEFT, y1: y(top), x2: WIDTH - RIGHT, y2: y(top)}));
  svg.append(element("text", {x: LEFT - 4, y: y(top) + 4, "text-anchor": "end"}, format(top)));
  svg.append(element("text", {x: LEFT - 4, y: y(0) + 4, "text-anchor": "end"}, "0"));
  svg.append(element("text", {x: LEFT, y: HEIGHT - 4}, `-${seconds / 60} min`));
  svg.append(element("text", {x: WIDTH - RIGHT, y: HEIGHT - 4, "text-anchor": "end"}, "now"));
  if (!values.length) {
    svg.append(element("text", {x: (LEFT + WIDTH) / 2, y: HEIGHT / 2, "text-anchor": "middle"},
                       "no data: no process reports these metrics yet"));
  }
  let legendX = LEFT;
  for (const series of chart.series) {
    // A missing value (a metric not reported) breaks the line instead of reading as 0.
    const segments = [[]];
    for (const p of points) {
      if (p[series.key] === null) segments.push([]);
      else segments[segments.length - 1].push(`${x(p.time).toFixed(1)},${y(p[series.key]).toFixed(1)}`);
    }
    for (const segment of segments.filter((s) => s.length)) {
      svg.append(element("polyline", {class: "series", stroke: series.color, points: segment.join(" "),
                                      "data-series": series.key}));
    }
    const latest = points.length ? points[points.length - 1][series.key] : null;
    svg.append(element("text", {x: legendX, y: 12, fill: series.color, "data-legend": series.key},
                       `${series.label} ${format(latest)}`));
    legendX += 170;
  }
}

async function refresh() {
  const offline = document.getElementById("offline");
  try {
    const response = await fetch("/state.json", {cache: "no-store"});
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const state = await response.json();
    document.getElementById("panels").innerHTML = state.panels;
    const now = state.updated ?? Date.now() / 1000;  // the server's clock: the points are on it
    const seconds = span(state.points, state.window_seconds, now);
    for (const chart of CHARTS) draw(chart, state.points, seconds, now);
    offline.hidden = true;
  } catch (error) {
    offline.textContent = `the dashboard server does not answer (${error.message}); retrying`;
    offline.hidden = false;
  }
}

refresh();
setInterval(refresh, 1000);
