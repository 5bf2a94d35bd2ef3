/* mstar run review: draws one run's data (from the report's inline payload or the dashboard's API). */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  // Plotly reads a few HTML tags in hover text; harness-made names must not become markup.
  const safe = (s) => String(s == null ? "" : s).replace(/[<>&]/g, (c) => ({ "<": "‹", ">": "›", "&": "+" })[c]);
  const fmt = (v, d = 4) => (v == null || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
  const C = () => window.MSTAR_CHARTS;
  const M = (window.MSTAR = { data: null, byId: {}, selected: null, renders: 0, onSelect: null, view: {} });

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }
  function clear(node, ...kids) { node.replaceChildren(...kids); return node; }
  function banner(msg, isError) {
    const b = $("banner"); b.hidden = !msg; b.textContent = msg || ""; b.className = "banner" + (isError ? " error" : "");
  }
  M.banner = banner;

  function render(data) {
    M.data = data;
    M.byId = Object.fromEntries(data.programs.map((p) => [p.id, p]));
    header(data.run);
    generations(data);
    treeControls(data);
    tree();
    heatControls(data);
    heatmaps();
    pareto(data);
    finalTable(data);
    incidents(data);
    operators(data);
    if (M.selected && M.byId[M.selected]) detail(M.selected);
    M.renders += 1;
    document.body.dataset.renders = String(M.renders);
    window.__mstarRenderedAt = performance.now();
  }
  M.render = render;

  function header(run) {
    document.title = "mstar run " + run.id;
    clear($("title"), "mstar run " + run.id, el("span", { class: "badge " + run.status, text: run.status }));
    const gen = run.generation_done == null ? "seeds" : String(run.generation_done);
    const live = run.status === "running" ? " (generation " + (Number(run.generation_done || 0) + 1) + " in progress)" : "";
    clear($("meta"), "task ", el("b", { text: run.task || "?" }), " · metric ", el("b", { text: run.metric + "@" + run.budget }),
      " · metric version ", el("b", { text: String(run.metric_version) }), " · generations done ", el("b", { text: gen + live }),
      " · programs ", el("b", { text: String(M.data.programs.length) }),
      run.stop_reason ? " · stop: " + run.stop_reason : "", " · " + run.dir);
    if (run.status === "running" && M.data.mode !== "dashboard") banner("Snapshot of a run still in progress: the final train/val/test step has not run yet.");
    else if (run.status === "failed") banner("This run ended without its final step (crash or kill); `mstar evolve --resume " + run.dir + "` continues it.");
    else if (M.data.mode !== "dashboard" || run.status !== "running") banner("");
  }

  function generations(data) {
    const n = Math.max(0, ...data.generations.map((g) => g.islands.length));
    const colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
    const series = [];
    for (let i = 0; i < n; i++) {
      const c = colors[i % colors.length];
      series.push({ name: "island " + i + " best", color: c, points: data.generations.map((g) => [g.generation, (g.islands[i] || {}).best]) });
      series.push({ name: "island " + i + " median", color: c, dash: true, points: data.generations.map((g) => [g.generation, (g.islands[i] || {}).median]) });
    }
    if (!data.generations.length) { clear($("gen"), el("div", { class: "empty", text: "The seeds are still being scored." })); return; }
    const gens = data.generations.map((g) => g.generation);
    C().lines($("gen"), series, { xlabel: "generation", ylabel: "train " + data.run.metric, xticks: gens.length <= 30 ? gens : null });
  }

  function treeControls(data) {
    const fill = (sel, values) => {
      const cur = sel.value;
      clear(sel, el("option", { value: "", text: "all" }), ...[...values].sort().map((v) => el("option", { value: v, text: v })));
      sel.value = values.has(cur) ? cur : "";
    };
    fill($("f-op"), new Set(data.programs.map((p) => p.operator)));
    fill($("f-status"), new Set(data.programs.map((p) => p.status)));
    clear($("ids"), ...data.programs.map((p) => el("option", { value: p.id, text: p.name })));
  }

  function ancestry(id) {
    const out = new Set(); const stack = [id];
    while (stack.length) { const q = stack.pop(); if (!q || out.has(q) || !M.byId[q]) continue; out.add(q); stack.push(...M.byId[q].parents); }
    return out;
  }

  function visible() {
    const op = $("f-op").value, st = $("f-status").value, min = parseFloat($("f-min").value);
    const only = $("f-best").checked && M.data.run.best_id ? ancestry(M.data.run.best_id) : null;
    return M.data.programs.filter((p) => (!op || p.operator === op) && (!st || p.status === st) &&
      (Number.isNaN(min) || (p.scores.train != null && p.scores.train >= min)) && (!only || only.has(p.id)));
  }

  // y: a child sits near the mean of its parents, spread so that nodes of one generation never overlap.
  function positions(progs) {
    const y = {}; const gens = {};
    for (const p of progs) (gens[p.generation] = gens[p.generation] || []).push(p);
    for (const g of Object.keys(gens).map(Number).sort((a, b) => a - b)) {
      const items = gens[g].map((p, i) => {
        const ys = p.parents.map((q) => y[q]).filter((v) => v != null);
        return { p, want: ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : i * 1.0 };
      }).sort((a, b) => a.want - b.want || a.p.island - b.p.island);
      let last = -Infinity;
      for (const it of items) { const v = Math.max(it.want, last + 1); y[it.p.id] = v; last = v; }
    }
    return y;
  }

  function tree() {
    const progs = visible(); const y = positions(progs); const shown = new Set(progs.map((p) => p.id));
    const edges = [];
    for (const p of progs) for (const q of p.parents) if (shown.has(q)) edges.push([M.byId[q].generation, y[q], p.generation, y[p.id]]);
    const best = M.data.run.best_id;
    const points = progs.map((p) => {
      const full = p.train_full && p.scores.train != null;
      return { x: p.generation, y: y[p.id], id: p.id, r: p.id === best ? 7 : 6,
        fill: full ? C().color(p.scores.train) : "#b9bec8",
        stroke: p.id === M.selected ? "#e0115f" : p.id === best ? "#d4a000" : "#fff", sw: p.id === M.selected || p.id === best ? 3 : 0.8,
        shape: p.id === best ? "star" : p.operator === "seed" ? "square" : "circle",
        title: p.name + "\n" + p.id + "\n" + p.operator + " · " + p.status + " · island " + p.island + "\ntrain " + fmt(p.scores.train) + (full ? "" : " (not fully scored)") };
    });
    const gens = [...new Set(progs.map((p) => p.generation))].sort((a, b) => a - b);
    const node = $("tree");
    if (!progs.length) clear(node, el("div", { class: "empty", text: "No program matches the filter." }));
    else C().scatter(node, points, { edges, zoom: true, view: M.view, hideY: true, xlabel: "generation", xticks: gens.length <= 40 ? gens : null, onClick: select, margin: { l: 16 } });
    node.dataset.nodes = String(progs.length);
    $("tree-count").textContent = progs.length + " of " + M.data.programs.length + " programs shown";
  }

  function select(id) {
    M.selected = id; detail(id); tree();
    if (M.onSelect) M.onSelect(id);
  }
  M.select = select;

  function diffPre(text) {
    const pre = el("pre", { class: "diff" });
    if (!text) { pre.textContent = "(identical source: the change is in the knob values)"; return pre; }
    for (const line of text.split("\n")) {
      const cls = line.startsWith("@@") ? "hunk" : line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : null;
      pre.append(cls ? el("span", { class: cls, text: line }) : document.createTextNode(line + "\n"));
    }
    return pre;
  }

  function stageTable(counts) {
    const keys = Object.keys(counts || {});
    if (!keys.length) return el("div", { class: "empty", text: "no diagnosed failures on train" });
    return el("table", {}, el("tr", {}, el("th", { text: "stage" }), el("th", { text: "probes" })),
      ...keys.sort((a, b) => counts[b] - counts[a]).map((k) => el("tr", {}, el("td", { text: k }), el("td", { text: String(counts[k]) }))));
  }

  function examples(list) {
    return el("table", { class: "examples" }, el("tr", {}, ...["probe", "category", "stage", "question"].map((h) => el("th", { text: h }))),
      ...list.map((d) => el("tr", {}, el("td", { text: d.probe_id || "" }), el("td", { text: d.category || "" }),
        el("td", { text: d.stage || "" }), el("td", { text: d.question || d.error || "" }))));
  }

  function detail(id) {
    const p = M.byId[id]; const box = $("detail");
    if (!p) { clear(box, el("p", { class: "hint", text: "Program " + id + " is not in this run." })); return; }
    const kv = el("dl", { class: "kv" });
    const add = (k, v) => kv.append(el("dt", { text: k }), el("dd", { text: v }));
    add("id", p.id); add("operator", p.operator); add("status", p.status + (p.error ? " — " + p.error : ""));
    add("island · generation", p.island + " · " + p.generation);
    add("parents", p.parents.map((q) => (M.byId[q] ? M.byId[q].name + " (" + q + ")" : q)).join(", ") || "none (seed)");
    add("scores", ["train", "val", "test"].map((s) => s + " " + fmt(p.scores[s]) + (p.episodes_done[s] ? " (" + p.episodes_done[s] + " ep)" : "")).join(" · "));
    add("context tokens · read ms", fmt(p.context_tokens, 1) + " · " + fmt(p.read_ms, 2));
    add("knobs", JSON.stringify(p.knobs));
    const parts = [el("h3", { text: p.name }), kv];
    parts.push(el("h4", { text: p.operator === "tune" ? "Tuning trials" : p.operator === "seed" ? "Seed" : "Reflection / rationale" }),
      el("pre", { class: "note", text: p.note || "(none recorded)" }));
    for (const q of p.parents) {
      parts.push(el("h4", { text: "Failure diagnoses it answered: " + (M.byId[q] ? M.byId[q].name : q) + "'s diagnosed misses on train (the operator is shown a sample)" }),
        stageTable(p.answered[q]));
      if (M.byId[q] && M.byId[q].diagnosis_examples.length) parts.push(examples(M.byId[q].diagnosis_examples));
    }
    for (const q of p.parents) parts.push(el("h4", { text: "Diff against parent " + (M.byId[q] ? M.byId[q].name : q) }), diffPre(p.diffs[q]));
    parts.push(el("h4", { text: "Its own diagnosed misses on train" }), stageTable(p.diagnoses));
    if (p.diagnosis_examples.length) parts.push(examples(p.diagnosis_examples));
    if (p.episode_failures.length) parts.push(el("h4", { text: "Failed episodes" }), el("pre", { text: p.episode_failures.join("\n") }));
    const src = el("details", {}, el("summary", { text: "Source (" + p.source.split("\n").length + " lines)" }), el("pre", { class: "source", text: p.source }));
    parts.push(src);
    clear(box, ...parts);
  }

  function heatControls(data) {
    const sel = $("hm-split"); const cur = sel.value;
    const splits = ["test", "val", "train"].filter((s) => data.heatmap.category[s]);
    clear(sel, ...splits.map((s) => el("option", { value: s, text: s })));
    sel.value = splits.includes(cur) ? cur : splits[0] || "";
  }

  function heatmaps() {
    const data = M.data; const split = $("hm-split").value;
    for (const [kind, node] of [["category", $("hm-cat")], ["episode", $("hm-ep")]]) {
      const table = (data.heatmap[kind] || {})[split] || {};
      const rows = data.heatmap.rows.filter((r) => table[r.id]);
      if (!rows.length) { node.style.height = ""; clear(node, el("div", { class: "empty", text: "No scores on " + (split || "any split") + " yet." })); continue; }
      const cols = [...new Set(rows.flatMap((r) => Object.keys(table[r.id])))].sort();
      const z = rows.map((r) => cols.map((c) => (table[r.id][c] == null ? null : table[r.id][c])));
      C().heatmap(node, rows.map((r) => r.name), cols, z, { title: data.run.metric + " per " + kind + " on " + split });
    }
  }

  function pareto(data) {
    const pts = data.programs.filter((p) => p.train_full && p.scores.train != null && p.context_tokens != null);
    const front = data.pareto.front.map((id) => M.byId[id]).filter(Boolean);
    const best = data.run.best_id;
    for (const [key, node, title] of [["context_tokens", $("pareto-tok"), "context tokens per read"], ["read_ms", $("pareto-ms"), "read latency (ms)"]]) {
      if (!pts.length) { clear(node, el("div", { class: "empty", text: "No program is fully scored on train yet." })); continue; }
      const points = pts.filter((p) => p[key] != null).map((p) => ({ x: p[key], y: p.scores.train, id: p.id, r: p.id === best ? 6 : 4,
        fill: front.includes(p) ? "#d62728" : "#7b8bb0", shape: p.id === best ? "star" : "circle", stroke: p.id === best ? "#d4a000" : "#fff",
        title: p.name + " (" + p.id + ")\n" + title + " " + fmt(p[key], 2) + "\ntrain " + fmt(p.scores.train) }));
      const sorted = front.filter((p) => p[key] != null).slice().sort((a, b) => a[key] - b[key]);
      C().scatter(node, points, { xlabel: title, ylabel: "train " + data.run.metric, onClick: select,
        polylines: key === "context_tokens" && sorted.length > 1 ? [{ color: "#d62728", points: sorted.map((p) => [p[key], p.scores.train]) }] : [] });
    }
  }

  function finalTable(data) {
    const f = data.final;
    $("rule").textContent = "Selection rule (--select " + data.run.select + "): " + data.run.selection_rule + "." +
      (f.done ? "" : " The final step has not run yet: the rows below are the programs scored on val or test so far.") +
      floorText(((f.summary || {}).final || {}).suite_floor);
    if (!f.rows.length) { clear($("final"), el("div", { class: "empty", text: "No program has been scored on val or test yet." })); return; }
    // A joint run: the train/val/test columns are the mean over suites; each suite's own test score beside them.
    const suites = [...new Set(f.rows.flatMap((r) => Object.keys((r.suites || {}).test || {})))].sort();
    const heads = ["program", "operator", "train", "val", "test", ...suites.map((s) => "test: " + s)];
    const t = el("table", { id: "final-table" }, el("tr", {}, ...heads.map((h) => el("th", { text: h }))));
    for (const r of f.rows) {
      const tr = el("tr", { class: r.picked ? "picked" : "" }, el("td", { text: (r.picked ? "★ pick: " : r.seed ? "seed " : "") + r.name + " (" + r.id + ")" }),
        el("td", { text: r.operator }), el("td", { text: fmt(r.train) }), el("td", { text: fmt(r.val) }), el("td", { text: fmt(r.test) }),
        ...suites.map((s) => el("td", { text: fmt(((r.suites || {}).test || {})[s]) })));
      tr.style.cursor = "pointer"; tr.addEventListener("click", () => select(r.id));
      t.append(tr);
    }
    clear($("final"), t);
  }

  // A joint run's pick is first narrowed to the programs that lose to no seed on any suite's val (--suite-floor).
  function floorText(fl) {
    if (!fl) return "";
    const best = Object.entries(fl.best_seeds || {}).map(([s, n]) => s + ": " + n).join(", ");
    return fl.programs ? " Suite floor: " + fl.programs + " of " + fl.of + " candidates lose to no seed on any suite's val (best seeds " + best + "); the pick was made among them."
      : " Suite floor: no candidate reaches every suite's best seed on val (" + best + "); the pick was made on the joint score.";
  }

  function incidents(data) {
    const inc = data.incidents || { rows: [], counts: {} };
    const kinds = Object.keys(inc.counts);
    if (!kinds.length) { clear($("incidents"), el("div", { class: "empty", text: "No migration, island reset or failed diagnosis yet." })); return; }
    const t = el("table", { id: "incidents-table" }, el("tr", {}, ...["generation", "event", "what"].map((h) => el("th", { text: h }))));
    for (const r of inc.rows) t.append(el("tr", { class: r.kind === "diagnosis_error" ? "error" : "" },
      el("td", { text: r.generation == null ? "" : String(r.generation) }), el("td", { text: r.kind.replace("_", " ") }), el("td", { text: r.text })));
    const shown = inc.rows.length, total = kinds.reduce((a, k) => a + inc.counts[k], 0);
    clear($("incidents"), el("p", { class: "hint", text: kinds.map((k) => inc.counts[k] + " " + k.replace("_", " ")).join(", ") +
      (shown < total ? " (the first " + shown + " shown; every one is an event in run.db)" : "") }), t);
  }

  function operators(data) {
    const cols = ["operator", "proposals", "accepted", "rejected", "failed", "pending", "llm_calls", "tokens", "usd", "propose_s", "eval_s"];
    const heads = ["operator", "proposals", "accepted", "rejected", "failed", "pending", "LLM calls", "tokens", "USD", "proposing (s)", "evaluating (s)"];
    const t = el("table", { id: "ops-table" }, el("tr", {}, ...heads.map((h) => el("th", { text: h }))));
    for (const r of data.operators) t.append(el("tr", {}, ...cols.map((c) => el("td", { text: c === "usd" ? "$" + Number(r[c] || 0).toFixed(4) : String(r[c] == null ? "" : r[c]) }))));
    const total = data.operators.reduce((a, r) => [a[0] + (r.tokens || 0), a[1] + (r.usd || 0)], [0, 0]);
    clear($("ops"), t, el("p", { class: "hint", text: "Total: " + total[0] + " tokens, $" + total[1].toFixed(4) + ", run wall time " + fmt(data.run.wall_s, 1) + " s." }));
  }

  function bindControls() {
    for (const id of ["f-op", "f-status", "f-min", "f-best"]) $(id).addEventListener("change", () => M.data && tree());
    $("f-find").addEventListener("change", (e) => { const v = e.target.value.trim(); const p = M.data && M.data.programs.find((q) => q.id === v || q.name === v); if (p) select(p.id); });
    $("hm-split").addEventListener("change", () => M.data && heatmaps());
  }

  async function inflate(b64) {
    const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  window.addEventListener("error", (e) => banner("The page hit an error while drawing: " + e.message, true));
  M.boot = async function (opts) {
    window.__t0 = performance.now();
    bindControls();
    try {
      if (opts.mode === "report") { const d = await inflate(opts.payload); d.mode = "report"; render(d); }
      else if (window.MSTAR_DASHBOARD) window.MSTAR_DASHBOARD.start();
    } catch (e) { banner("Could not draw this run: " + e.message, true); }
  };
})();
