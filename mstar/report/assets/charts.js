/* Small SVG charts for the run review: lines, a zoomable scatter (the lineage tree, the Pareto plots) and
   a heatmap. SVG keeps the page light (a charting library's bundle costs seconds to parse on a busy
   machine) and every label is set as text, never as markup. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];

  function s(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v != null) e.setAttribute(k, v);
    if (parent) parent.append(e);
    return e;
  }
  function tip(node, text) { s("title", {}, node).textContent = text; return node; }

  function color(v, lo = 0, hi = 1) {
    if (v == null || Number.isNaN(v)) return "#b9bec8";
    const t = Math.min(1, Math.max(0, hi > lo ? (v - lo) / (hi - lo) : 0.5)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
    const a = VIRIDIS[i], b = VIRIDIS[i + 1];
    const ch = (h, k) => parseInt(h.slice(1 + 2 * k, 3 + 2 * k), 16);
    return "rgb(" + [0, 1, 2].map((k) => Math.round(ch(a, k) + f * (ch(b, k) - ch(a, k)))).join(",") + ")";
  }

  function ticks(lo, hi, n = 6) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }
  const label = (v) => (Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1).replace(/\.0$/, "") : String(+v.toFixed(3)));

  function extent(vals, pad = 0.05) {
    const v = vals.filter((x) => x != null && !Number.isNaN(x));
    if (!v.length) return [0, 1];
    let lo = Math.min(...v), hi = Math.max(...v);
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    const d = (hi - lo) * pad;
    return [lo - d, hi + d];
  }

  // A frame with axes; returns the SVG, the plot group (for zooming) and the scales.
  function frame(node, opts) {
    const W = node.clientWidth || 800, H = node.clientHeight || 320;
    const m = Object.assign({ t: 12, r: 16, b: 40, l: 56 }, opts.margin || {});
    node.replaceChildren();
    const svg = s("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, class: "chart" }, node);
    const [x0, x1] = opts.x, [y0, y1] = opts.y;
    const X = (v) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
    const Y = (v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
    const axes = s("g", { class: "axes" }, svg);
    if (!opts.hideX) for (const t of opts.xticks || ticks(x0, x1)) {
      s("line", { x1: X(t), x2: X(t), y1: m.t, y2: H - m.b, class: "grid" }, axes);
      s("text", { x: X(t), y: H - m.b + 14, "text-anchor": "middle", class: "tick" }, axes).textContent = label(t);
    }
    if (!opts.hideY) for (const t of ticks(y0, y1, 5)) {
      s("line", { x1: m.l, x2: W - m.r, y1: Y(t), y2: Y(t), class: "grid" }, axes);
      s("text", { x: m.l - 6, y: Y(t) + 4, "text-anchor": "end", class: "tick" }, axes).textContent = label(t);
    }
    if (opts.xlabel) s("text", { x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle", class: "axis-label" }, svg).textContent = opts.xlabel;
    if (opts.ylabel) s("text", { x: 12, y: (m.t + H - m.b) / 2, transform: "rotate(-90 12 " + (m.t + H - m.b) / 2 + ")", "text-anchor": "middle", class: "axis-label" }, svg).textContent = opts.ylabel;
    s("clipPath", { id: node.id + "-clip" }, s("defs", {}, svg)).append(s("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b }));
    const clip = s("g", { "clip-path": "url(#" + node.id + "-clip)" }, svg);
    const plot = s("g", { class: "plot-area" }, clip);
    return { svg, plot, X, Y, W, H, m };
  }

  function legend(svg, items, x, y) {
    const g = s("g", { class: "legend" }, svg);
    let cx = x;
    for (const it of items) {
      s("line", { x1: cx, x2: cx + 18, y1: y, y2: y, stroke: it.color, "stroke-width": 2, "stroke-dasharray": it.dash ? "4 3" : null }, g);
      const t = s("text", { x: cx + 22, y: y + 4, class: "tick" }, g);
      t.textContent = it.name;
      cx += 30 + it.name.length * 6.5;
    }
  }

  // series: [{name, color, dash, points: [[x, y], ...]}]
  function lines(node, series, opts) {
    const xs = series.flatMap((q) => q.points.map((p) => p[0])), ys = series.flatMap((q) => q.points.map((p) => p[1]));
    const f = frame(node, Object.assign({ x: extent(xs, 0.03), y: extent(ys), margin: { t: 26 } }, opts));
    for (const q of series) {
      const pts = q.points.filter((p) => p[1] != null);
      if (!pts.length) continue;
      s("polyline", { points: pts.map((p) => f.X(p[0]) + "," + f.Y(p[1])).join(" "), fill: "none", stroke: q.color, "stroke-width": 2, "stroke-dasharray": q.dash ? "5 4" : null }, f.plot);
      if (!q.dash) for (const p of pts) tip(s("circle", { cx: f.X(p[0]), cy: f.Y(p[1]), r: 3.5, fill: q.color }, f.plot), q.name + ": generation " + p[0] + ", " + p[1].toFixed(4));
    }
    legend(f.svg, series, f.m.l, 12);
    return f;
  }

  // The scatter (the lineage tree, the Pareto plots). points: [{x, y, id, fill, stroke, sw, shape, r, title}],
  // edges: [[x1, y1, x2, y2]]. With opts.zoom, opts.view keeps the visible domain across redraws.
  function scatter(node, points, opts) {
    const full = { x: opts.x || extent(points.map((p) => p.x)), y: opts.y || extent(points.map((p) => p.y)) };
    const view = opts.view || {};
    // Not zoomed in (or the first draw): follow the data, e.g. a new generation that just landed.
    if (!opts.zoom || !view.x || !view.prev || !zoomed(view, view.prev)) { view.x = full.x.slice(); view.y = full.y.slice(); }
    view.prev = full;
    const f = frame(node, Object.assign({}, opts, { x: view.x, y: view.y, xticks: opts.zoom && zoomed(view, full) ? null : opts.xticks }));
    for (const ln of opts.polylines || []) s("polyline", { points: ln.points.map((p) => f.X(p[0]) + "," + f.Y(p[1])).join(" "), fill: "none", stroke: ln.color, "stroke-width": ln.width || 1.5 }, f.plot);
    if (opts.edges && opts.edges.length) {
      let d = "";
      for (const [a, b, c, e] of opts.edges) d += "M" + f.X(a).toFixed(1) + " " + f.Y(b).toFixed(1) + "L" + f.X(c).toFixed(1) + " " + f.Y(e).toFixed(1);
      s("path", { d, stroke: "#c3c8d2", "stroke-width": 1, fill: "none" }, f.plot);
    }
    const nodes = s("g", { class: "nodes" }, f.plot);
    for (const p of points) {
      const r = p.r || 6, x = f.X(p.x), y = f.Y(p.y);
      const attrs = { class: "node", "data-id": p.id, fill: p.fill, stroke: p.stroke || "#fff", "stroke-width": p.sw || 0.8 };
      const e = p.shape === "square" ? s("rect", Object.assign(attrs, { x: x - r, y: y - r, width: 2 * r, height: 2 * r }), nodes)
        : p.shape === "star" ? s("path", Object.assign(attrs, { d: star(x, y, r * 1.6) }), nodes)
        : s("circle", Object.assign(attrs, { cx: x, cy: y, r }), nodes);
      if (p.title) tip(e, p.title);
    }
    if (opts.onClick) f.svg.addEventListener("click", (ev) => { const n = ev.target.closest(".node"); if (n && !node._dragged) opts.onClick(n.getAttribute("data-id")); });
    if (opts.zoom) zoomable(node, f, view, full, () => scatter(node, points, Object.assign({}, opts, { view })));
    return f;
  }

  const zoomed = (v, full) => v.x[0] !== full.x[0] || v.x[1] !== full.x[1] || v.y[0] !== full.y[0] || v.y[1] !== full.y[1];

  function star(x, y, r) {
    let d = "";
    for (let i = 0; i < 10; i++) {
      const a = -Math.PI / 2 + (i * Math.PI) / 5, rr = i % 2 ? r * 0.45 : r;
      d += (i ? "L" : "M") + (x + rr * Math.cos(a)).toFixed(1) + " " + (y + rr * Math.sin(a)).toFixed(1);
    }
    return d + "Z";
  }

  // Wheel zooms around the pointer, drag pans, double-click resets. Zooming changes the plotted domain and
  // redraws (axes follow, markers keep their size); listeners sit on the container, bound once.
  function zoomable(node, f, view, full, redraw) {
    node._zoom = { f, view, full, redraw };
    if (node._zoomBound) return;
    node._zoomBound = true;
    const data = (ev) => {
      const z = node._zoom, box = z.f.svg.getBoundingClientRect(), m = z.f.m;
      const fx = (ev.clientX - box.left - m.l) / (z.f.W - m.l - m.r), fy = (z.f.H - m.b - (ev.clientY - box.top)) / (z.f.H - m.t - m.b);
      return [z.view.x[0] + fx * (z.view.x[1] - z.view.x[0]), z.view.y[0] + fy * (z.view.y[1] - z.view.y[0])];
    };
    let frameReq = 0;
    const schedule = () => { if (!frameReq) frameReq = requestAnimationFrame(() => { frameReq = 0; node._zoom.redraw(); }); };
    node.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const z = node._zoom, [cx, cy] = data(ev), k = ev.deltaY < 0 ? 1 / 1.25 : 1.25;
      const span = (a, c, lo, hi) => {
        let n = [c - (c - a[0]) * k, c + (a[1] - c) * k];
        if (n[1] - n[0] >= hi - lo) n = [lo, hi];
        return n;
      };
      z.view.x = span(z.view.x, cx, z.full.x[0], z.full.x[1]);
      z.view.y = span(z.view.y, cy, z.full.y[0], z.full.y[1]);
      schedule();
    }, { passive: false });
    let drag = null;
    node.addEventListener("pointerdown", (ev) => {
      const z = node._zoom;
      drag = { x: ev.clientX, y: ev.clientY, vx: z.view.x.slice(), vy: z.view.y.slice() };
      node._dragged = false;
    });
    node.addEventListener("pointermove", (ev) => {
      if (!drag || !(ev.buttons & 1)) { drag = null; return; }
      const z = node._zoom, dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
      if (Math.abs(dx) + Math.abs(dy) < 4 && !node._dragged) return;
      node._dragged = true;
      const sx = (drag.vx[1] - drag.vx[0]) / (z.f.W - z.f.m.l - z.f.m.r), sy = (drag.vy[1] - drag.vy[0]) / (z.f.H - z.f.m.t - z.f.m.b);
      z.view.x = [drag.vx[0] - dx * sx, drag.vx[1] - dx * sx];
      z.view.y = [drag.vy[0] + dy * sy, drag.vy[1] + dy * sy];
      schedule();
    });
    node.addEventListener("pointerup", () => { drag = null; setTimeout(() => { node._dragged = false; }, 0); });
    node.addEventListener("dblclick", () => { const z = node._zoom; z.view.x = z.full.x.slice(); z.view.y = z.full.y.slice(); schedule(); });
  }

  // rows: [label], cols: [label], z[row][col] in [0, 1] or null.
  function heatmap(node, rows, cols, z, opts) {
    const cell = Math.max(8, Math.min(90, ((node.clientWidth || 800) - 200) / Math.max(1, cols.length)));
    const m = { t: 24, l: 190, b: 90 };
    const W = Math.max(m.l + cell * cols.length + 20, m.l + 8 * (opts.title || "").length), H = m.t + 22 * rows.length + m.b;
    node.replaceChildren();
    node.style.height = H + "px";
    const svg = s("svg", { width: W, height: H, class: "chart heatmap" }, node);
    if (opts.title) s("text", { x: m.l, y: 14, class: "axis-label" }, svg).textContent = opts.title;
    rows.forEach((r, i) => { s("text", { x: m.l - 6, y: m.t + 22 * i + 15, "text-anchor": "end", class: "tick" }, svg).textContent = r; });
    cols.forEach((c, j) => {
      const x = m.l + cell * j + cell / 2, y = m.t + 22 * rows.length + 8;
      s("text", { x, y, transform: "rotate(40 " + x + " " + y + ")", class: "tick" }, svg).textContent = c.length > 22 ? c.slice(0, 21) + "…" : c;
    });
    rows.forEach((r, i) => cols.forEach((c, j) => {
      const v = z[i][j];
      const g = s("g", { class: "cell" }, svg);
      s("rect", { x: m.l + cell * j, y: m.t + 22 * i, width: cell - 1, height: 21, fill: color(v) }, g);
      if (cell >= 30 && v != null) s("text", { x: m.l + cell * j + cell / 2, y: m.t + 22 * i + 15, "text-anchor": "middle", class: "cell-label", fill: v > 0.6 ? "#000" : "#fff" }, g).textContent = v.toFixed(2);
      tip(g, r + " · " + c + ": " + (v == null ? "not scored" : v.toFixed(4)));
    }));
  }

  window.MSTAR_CHARTS = { lines, scatter, heatmap, color };
})();
