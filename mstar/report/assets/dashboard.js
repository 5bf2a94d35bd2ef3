/* The dashboard's live part: the run list, and polling the shown run for changes (no reload). */
(function () {
  "use strict";
  const M = window.MSTAR;
  const POLL_MS = 2000;
  let current = null, stamp = null, timer = null, listTimer = null;

  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-store" });
    const body = await r.json();
    if (!r.ok || body.error) throw new Error(body.error || "HTTP " + r.status);
    return body;
  }

  async function listRuns() {
    const nav = document.getElementById("runs"); nav.hidden = false;
    try {
      const body = await getJSON("api/runs");
      nav.replaceChildren(document.createTextNode("runs in " + body.root + ": "));
      if (!body.runs.length) nav.append(document.createTextNode("none yet"));
      for (const r of body.runs) {
        const a = document.createElement("a");
        a.href = "#run=" + encodeURIComponent(r.name);
        a.className = r.name === current ? "on" : "";
        a.textContent = r.name + " ";
        const b = document.createElement("span"); b.className = "badge " + r.status; b.textContent = r.status;
        a.append(b); a.title = r.detail || ""; nav.append(a);
      }
      if (!current && body.runs.length) show(body.runs[0].name);
      else if (!body.runs.length) M.banner("No runs under " + body.root + " yet: start one with `mstar evolve --runs-dir " + body.root + "`.");
    } catch (e) { M.banner("Cannot list the runs: " + e.message, true); }
  }

  async function poll() {
    if (!current) return;
    const name = current;
    try {
      const body = await getJSON("api/runs/" + encodeURIComponent(name) + "/data" + (stamp ? "?stamp=" + encodeURIComponent(stamp) : ""));
      if (name !== current) return;
      if (!body.unchanged) {
        stamp = body.stamp; body.data.mode = "dashboard"; M.render(body.data);
        const run = body.data.run;
        M.banner(run.status === "running" ? "Live: refreshing every " + POLL_MS / 1000 + " s (last change " + new Date().toLocaleTimeString() + ")." : "");
        if (run.status === "failed") M.banner("This run ended without its final step (crash or kill); `mstar evolve --resume " + run.dir + "` continues it.");
      }
    } catch (e) {
      if (name === current) M.banner("Run " + name + ": " + e.message, true);
    } finally {
      if (name === current) timer = setTimeout(poll, POLL_MS);
    }
  }

  function show(name) {
    if (timer) clearTimeout(timer);
    current = name; stamp = null; M.selected = null;
    if (location.hash !== "#run=" + encodeURIComponent(name)) history.replaceState(null, "", "#run=" + encodeURIComponent(name));
    for (const a of document.querySelectorAll("#runs a")) a.className = a.getAttribute("href") === "#run=" + encodeURIComponent(name) ? "on" : "";
    poll();
  }

  window.MSTAR_DASHBOARD = {
    start() {
      const m = /#run=([^&]+)/.exec(location.hash);
      if (m) current = decodeURIComponent(m[1]);
      listRuns().then(() => { if (current) show(current); });
      listTimer = setInterval(listRuns, 5000);
      window.addEventListener("hashchange", () => { const h = /#run=([^&]+)/.exec(location.hash); if (h && decodeURIComponent(h[1]) !== current) show(decodeURIComponent(h[1])); });
    },
    stop() { clearTimeout(timer); clearInterval(listTimer); },
  };
})();
