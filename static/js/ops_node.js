// One node's page: its facts and GPUs live, per-GPU charts (the last hour at 1 s, 30 days at
// 1 min from the stored rollups), its actions and audit log. Node text goes in as text only.
(function () {
  "use strict";
  const {cfg, fmt, setText, el, FleetStore, liveState, connectLive, actionsWire, auditAppend, alertsOf} = window.Ops;

  const store = new FleetStore();
  const $ = (id) => document.getElementById(id);
  const CHARTS = [
    {id: "chart-util", title: "Utilization (%) — or CPU without NVML", key: "utilization"},
    {id: "chart-vram", title: "VRAM used (MiB) — or RAM without NVML", key: "vram_used_mb"},
    {id: "chart-temp", title: "Temperature (°C)", key: "temperature_c"},
    {id: "chart-power", title: "Power draw (W)", key: "power_w"},
  ];
  let minutes = 10, liveAppend = true, traceOf = new Map(); // gpu index -> trace number

  function layout(title) {
    return {title: {text: title, font: {size: 13}}, margin: {t: 30, r: 10, b: 30, l: 50}, height: 240, xaxis: {type: "date"},
      showlegend: true, legend: {orientation: "h", y: -0.25}};
  }
  function drawSeries(series) {
    traceOf = new Map();
    const gpus = Object.keys(series.gpus).sort((a, b) => Number(a) - Number(b));
    gpus.forEach((g, i) => traceOf.set(Number(g), i));
    for (const c of CHARTS) {
      const traces = gpus.map((g) => {
        const s = series.gpus[g];
        return {x: s.t.map((t) => new Date(t * 1000)), y: s[c.key], name: g === "-1" ? "CPU" : `GPU ${g}`, mode: "lines", type: "scattergl"};
      });
      Plotly.react($(c.id), traces, layout(c.title), {displayModeBar: false, responsive: true});
    }
    const points = gpus.reduce((n, g) => n + series.gpus[g].t.length, 0);
    setText($("series-info"), `${series.resolution_s === 1 ? "1 s samples" : "1 min rollups"} · ${points.toLocaleString()} points`);
  }
  async function loadSeries(m) {
    minutes = m;
    liveAppend = m <= 60;
    const resp = await fetch(`/ops/api/nodes/${encodeURIComponent(cfg.node)}/series/?minutes=${m}`, {credentials: "same-origin"});
    if (resp.ok) drawSeries(await resp.json());
  }
  $("range-buttons").addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-minutes]");
    if (!b) return;
    for (const x of $("range-buttons").querySelectorAll("button")) x.setAttribute("aria-pressed", String(x === b));
    loadSeries(Number(b.dataset.minutes));
  });

  let appendedTs = null;
  function appendLive(n) {
    if (!liveAppend || !n.ts || n.ts === appendedTs) return; // a state change brings no new reading
    appendedTs = n.ts;
    const t = new Date(n.ts * 1000);
    const rows = (n.gpus || []).length ? n.gpus.map((g) => ({index: g[store.index("index")], get: (k) => g[store.index(k)]}))
      : n.host ? [{index: -1, get: (k) => ({utilization: n.host.cpu_percent, vram_used_mb: n.host.ram_used_mb}[k] ?? null)}] : [];
    if (rows.some((r) => !traceOf.has(r.index))) { loadSeries(minutes); return; }
    const which = rows.map((r) => traceOf.get(r.index));
    for (const c of CHARTS) {
      Plotly.extendTraces($(c.id), {x: rows.map(() => [t]), y: rows.map((r) => [r.get(c.key)])}, which, minutes * 60);
    }
  }

  const gpuBody = $("gpu-table").querySelector("tbody");
  const gpuRows = new Map();
  function renderGpus(n) {
    const inv = new Map((n.gpu_inventory || []).map((g) => [g.index, g]));
    const v = (g, k) => g[store.index(k)];
    const wanted = [];
    for (const g of n.gpus || []) {
      const idx = v(g, "index");
      let row = gpuRows.get(idx);
      if (!row) {
        row = {tr: el("tr"), cells: []};
        for (let i = 0; i < 10; i++) { const td = el("td"); row.cells.push(td); row.tr.append(td); }
        gpuRows.set(idx, row);
      }
      const meta = inv.get(idx) || {};
      const texts = [`GPU ${idx}`, `${meta.name || ""}${meta.uuid ? " · " + meta.uuid : ""}`, `${fmt.num(v(g, "utilization"))}%`, `${fmt.num(v(g, "memory_utilization"))}%`,
        `${fmt.num(v(g, "vram_used_mb"))} / ${fmt.num(v(g, "vram_total_mb"))} MiB`, `${fmt.num(v(g, "temperature_c"))} °C`,
        `${fmt.num(v(g, "power_w"))} / ${fmt.num(v(g, "power_limit_w"))} W`, `${fmt.num(v(g, "sm_clock_mhz"))} MHz`,
        v(g, "throttle_reasons") ? "0x" + Number(v(g, "throttle_reasons")).toString(16) : "–",
        `${v(g, "ecc_errors")} / ${v(g, "xid_errors")}${v(g, "last_xid") ? " (last XID " + v(g, "last_xid") + ")" : ""}`];
      texts.forEach((t, i) => setText(row.cells[i], t));
      wanted.push(row.tr);
    }
    if (!wanted.length) {
      const tr = el("tr");
      tr.append(el("td", {colspan: "10"}, n.host ? `CPU mode (no NVML): CPU ${fmt.num(n.host.cpu_percent)}%, RAM ${fmt.num(n.host.ram_used_mb)} / ${fmt.num(n.host.ram_total_mb)} MiB` : "no readings yet"));
      wanted.push(tr);
    }
    gpuBody.replaceChildren(...wanted);
  }

  let lastActionKey = "";
  function renderFacts(n) {
    const st = liveState(n);
    setText($("node-state"), st);
    $("node-state").className = `state-badge state-${st}`;
    setText($("fact-reason"), n.state_reason || "–");
    setText($("fact-drained"), n.drained ? "drained by ops (kept across reconnects and agent restarts)" : "");
    setText($("fact-host"), n.hostname || "–");
    setText($("fact-engine"), n.engine || "–");
    setText($("fact-agent"), n.agent_version || "–");
    setText($("fact-protocol"), n.protocol_version ?? "–");
    setText($("fact-seen"), fmt.ago(n.ts || n.last_seen_at));
    setText($("fact-refused"), n.frames_refused || 0);
    setText($("fact-refusal"), n.last_refusal || "");
    const la = n.last_action;
    if (la && `${la.id}:${la.outcome}` !== lastActionKey) {
      lastActionKey = `${la.id}:${la.outcome}`;
      $("fact-last-action").replaceChildren(`${la.action}: `, el("strong", null, la.outcome), ` ${la.message || ""}`);
    }
    const alerts = alertsOf(n, store, cfg.overheat_c);
    const items = alerts.map((a) => { const li = el("li", {class: `alert alert-${a.kind}`}); li.append(el("strong", null, a.kind), ` ${a.text}`); return li; });
    $("alerts").replaceChildren(...(items.length ? items : [el("li", {class: "alert-none"}, "No alerts.")]));
  }

  function render() {
    const dirty = store.takeDirty();
    const n = store.nodes.get(cfg.node_id);
    if (!n) return;
    renderFacts(n);
    if (dirty.has(n.id)) { renderGpus(n); appendLive(n); }
    for (const a of store.actions.splice(0)) auditAppend(a);
  }

  drawSeries(JSON.parse($("ops-series").textContent));
  // The fleet stream carries every node; this page keeps only its own (set before connecting:
  // the socket opened by the page's head may already hold the snapshot).
  const merge = store.merge.bind(store);
  store.merge = (msg) => merge({...msg, nodes: (msg.nodes || []).filter((x) => x.id === cfg.node_id)});
  connectLive(store, $("live-status"));
  setInterval(render, 1000);
  actionsWire();
})();
