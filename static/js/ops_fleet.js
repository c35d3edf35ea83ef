// The fleet page at 5,000 GPUs: a summary line, alerts first, a canvas GPU wall, a paged node
// table and aggregate charts. Messages are merged into the store as they arrive (no DOM
// work); a timer renders at most once a second and touches only what changed.
(function () {
  "use strict";
  const {timing, cfg, fmt, setText, el, FleetStore, liveState, connectLive, actionsWire, auditAppend, alertsOf} = window.Ops;

  const RENDER_EVERY_MS = 1000;
  const CHART_EVERY_MS = 2000;
  const CHART_POINTS = 450; // 15 min at one point per 2 s
  const PAGE_SIZE = 50;
  const ALERTS_SHOWN = 30;
  const STATES = ["online", "draining", "restarting", "stuck", "offline"];

  const store = new FleetStore();
  const perf = (window.__opsPerf = {firstRenderMs: null, renders: 0, ages: []});

  // --- per-node figures, recomputed only for nodes that changed ------------------------
  function derive(n) {
    const iU = store.index("utilization"), iV = store.index("vram_used_mb"), iT = store.index("vram_total_mb"), iC = store.index("temperature_c");
    let util = 0, vu = 0, vt = 0, hot = null;
    for (const g of n.gpus || []) {
      util += g[iU] || 0; vu += g[iV] || 0; vt += g[iT] || 0;
      if (g[iC] !== null && (hot === null || g[iC] > hot)) hot = g[iC];
    }
    const count = (n.gpus || []).length;
    n._util = count ? util / count : n.host ? n.host.cpu_percent : null;
    n._vram = vt ? (100 * vu) / vt : n.host && n.host.ram_total_mb ? (100 * n.host.ram_used_mb) / n.host.ram_total_mb : null;
    n._temp = hot;
    n._model = n.gpu_model || (n.nvml === false ? "CPU host" : "");
  }

  // --- summary line ----------------------------------------------------------------------
  const sum = {};
  for (const k of ["nodes", "gpus", "util", "vram", "jobs", "success", "alerts"]) sum[k] = document.getElementById(`sum-${k}`);
  function quantile(sorted, q) { return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null; }
  function fleetFigures() {
    const iU = store.index("utilization"), iV = store.index("vram_used_mb"), iT = store.index("vram_total_mb");
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    let gpus = 0, busy = 0, running = 0, queued = 0, ok = 0, jobs = 0;
    const utils = [], vrams = [];
    for (const n of store.nodes.values()) {
      const st = liveState(n);
      counts[st] = (counts[st] || 0) + 1;
      const s = n.stats || {};
      running += s.jobs_running || 0; queued += s.jobs_queued || 0;
      if (s.jobs_5m && s.success_rate_5m !== null && s.success_rate_5m !== undefined) { jobs += s.jobs_5m; ok += s.success_rate_5m * s.jobs_5m; }
      for (const g of n.gpus || []) {
        gpus += 1;
        if (st === "offline") continue;
        const u = g[iU] || 0;
        if (u >= 10) busy += 1;
        utils.push(u);
        if (g[iT]) vrams.push((100 * (g[iV] || 0)) / g[iT]);
      }
    }
    const fu = Float64Array.from(utils).sort(), fv = Float64Array.from(vrams).sort();
    const mean = (a) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : null);
    return {counts, gpus, busy, running, queued, success: jobs ? ok / jobs : null, jobs,
      utilMean: mean(fu), utilP95: quantile(fu, 0.95), vramMean: mean(fv), vramP95: quantile(fv, 0.95)};
  }
  function renderSummary(f, alertCount) {
    setText(sum.nodes, STATES.filter((s) => f.counts[s]).map((s) => `${f.counts[s]} ${s}`).join(" · ") || "no nodes");
    setText(sum.gpus, `${f.gpus.toLocaleString()} GPUs, ${f.busy.toLocaleString()} busy`);
    setText(sum.util, `util ${fmt.num(f.utilMean)}% mean, ${fmt.num(f.utilP95)}% p95`);
    setText(sum.vram, `VRAM ${fmt.num(f.vramMean)}% mean, ${fmt.num(f.vramP95)}% p95`);
    setText(sum.jobs, `${f.running} running, ${f.queued} queued`);
    setText(sum.success, f.success === null ? "success –" : `success ${fmt.pct(f.success)} (5 min, ${f.jobs} jobs)`);
    setText(sum.alerts, `${alertCount} alert${alertCount === 1 ? "" : "s"}`);
  }

  // --- alerts, newest first ---------------------------------------------------------------
  const alertList = document.getElementById("alerts");
  const firstSeen = new Map();
  let alertSignature = "";
  function renderAlerts() {
    const now = Date.now() / 1000;
    const alerts = [];
    for (const n of store.nodes.values()) for (const a of alertsOf(n, store, cfg.overheat_c)) alerts.push(a);
    const live = new Set();
    for (const a of alerts) {
      live.add(a.key);
      if (!firstSeen.has(a.key)) firstSeen.set(a.key, a.since || now);
      a.since = firstSeen.get(a.key);
    }
    for (const k of [...firstSeen.keys()]) if (!live.has(k)) firstSeen.delete(k);
    alerts.sort((a, b) => b.since - a.since || a.text.localeCompare(b.text));
    const shown = alerts.slice(0, ALERTS_SHOWN);
    const signature = shown.map((a) => a.key + a.text).join("|") + alerts.length;
    if (signature !== alertSignature) {
      alertSignature = signature;
      const items = shown.map((a) => {
        const li = el("li", {class: `alert alert-${a.kind}`});
        const link = el("a", {href: `/ops/nodes/${encodeURIComponent(a.node.name)}/`}, a.text);
        li.append(el("strong", null, a.kind), " ", link, el("span", {class: "alert-since"}, ` since ${fmt.ago(a.since)}`));
        return li;
      });
      if (!items.length) items.push(el("li", {class: "alert-none"}, "No alerts."));
      if (alerts.length > shown.length) items.push(el("li", {class: "alert-more"}, `and ${alerts.length - shown.length} more`));
      alertList.replaceChildren(...items);
    }
    return alerts.length;
  }

  // --- the GPU wall: one canvas cell per GPU ---------------------------------------------
  const wall = document.getElementById("gpu-wall");
  const ctx = wall.getContext("2d");
  const tip = document.getElementById("wall-tip");
  const metricSelect = document.getElementById("wall-metric");
  let layout = {cells: [], byNode: new Map(), size: 12, gap: 2, cols: 1};
  const drawnState = new Map();
  const ix = {};
  function indexes() { for (const k of store.fields) ix[k] = store.index(k); }
  const METRICS = {
    utilization: (n, g) => g[ix.utilization] / 100,
    vram: (n, g) => (g[ix.vram_total_mb] ? g[ix.vram_used_mb] / g[ix.vram_total_mb] : null),
    temperature: (n, g) => (g[ix.temperature_c] === null ? null : (g[ix.temperature_c] - 30) / 60),
    power: (n, g) => (g[ix.power_limit_w] ? g[ix.power_w] / g[ix.power_limit_w] : null),
  };
  // 64 precomputed colours: 5,000 fillStyle strings parsed per second would cost more than the drawing.
  const PALETTE = Array.from({length: 64}, (_, i) => { const x = i / 63; return `hsl(${Math.round(140 - 140 * x)}, 70%, ${Math.round(45 + 10 * (1 - x))}%)`; });
  function colour(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "#e5e7eb";
    return PALETTE[Math.round(63 * Math.max(0, Math.min(1, v)))];
  }
  function relayout() {
    const nodes = [...store.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
    const cells = [];
    const byNode = new Map();
    for (const n of nodes) {
      const count = Math.max(1, (n.gpus || []).length);
      const start = cells.length;
      for (let i = 0; i < count; i++) cells.push({node: n, pos: i});
      byNode.set(n.id, [start, cells.length]);
    }
    const width = wall.parentElement.clientWidth || 1000;
    const size = cells.length > 2000 ? 10 : cells.length > 500 ? 14 : 22;
    const gap = 2;
    const cols = Math.max(1, Math.floor(width / (size + gap)));
    const rows = Math.max(1, Math.ceil(cells.length / cols));
    const ratio = window.devicePixelRatio || 1;
    wall.style.width = `${cols * (size + gap)}px`;
    wall.style.height = `${rows * (size + gap)}px`;
    wall.width = cols * (size + gap) * ratio;
    wall.height = rows * (size + gap) * ratio;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    layout = {cells, byNode, size, gap, cols};
  }
  // The node's cells, or only those at the given GPU positions (what a delta changed).
  function drawNode(n, positions) {
    const range = layout.byNode.get(n.id);
    if (!range) return;
    const st = liveState(n);
    const stateChanged = drawnState.get(n.id) !== st;
    drawnState.set(n.id, st);
    if (stateChanged || positions === true) positions = null;
    const value = METRICS[metricSelect.value];
    const {size, gap, cols} = layout;
    for (let c = range[0]; c < range[1]; c++) {
      if (positions && !positions.has(layout.cells[c].pos)) continue;
      const g = (n.gpus || [])[layout.cells[c].pos];
      let fill;
      if (st === "offline") fill = "#9ca3af";
      else if (!g) fill = n.host ? colour(n.host.cpu_percent / 100) : "#e5e7eb";
      else fill = colour(value(n, g));
      const x = (c % cols) * (size + gap), y = Math.floor(c / cols) * (size + gap);
      ctx.fillStyle = fill;
      ctx.fillRect(x, y, size, size);
      if (st === "draining" || st === "stuck" || st === "restarting") {
        ctx.strokeStyle = st === "stuck" ? "#7e22ce" : st === "draining" ? "#b45309" : "#1d4ed8";
        ctx.lineWidth = 2;
        ctx.strokeRect(x + 1, y + 1, size - 2, size - 2);
      }
    }
  }
  function renderWall(dirty, full) {
    if (full) {
      ctx.clearRect(0, 0, wall.width, wall.height);
      for (const n of store.nodes.values()) drawNode(n, true);
      return;
    }
    for (const [id, positions] of dirty) { const n = store.nodes.get(id); if (n) drawNode(n, positions); }
    // Nodes that went silent since they were drawn (no message says so): grey them now.
    for (const n of store.nodes.values()) if (!dirty.has(n.id) && drawnState.get(n.id) !== liveState(n)) drawNode(n, true);
  }
  function cellAt(ev) {
    const r = wall.getBoundingClientRect();
    const {size, gap, cols, cells} = layout;
    const col = Math.floor((ev.clientX - r.left) / (size + gap)), row = Math.floor((ev.clientY - r.top) / (size + gap));
    if (col < 0 || col >= cols) return null;
    return cells[row * cols + col] || null;
  }
  function tipText(cell) {
    const n = cell.node, g = (n.gpus || [])[cell.pos];
    const lines = [`${n.name} · ${liveState(n)}`];
    if (g) {
      const v = (k) => g[store.index(k)];
      const inv = (n.gpu_inventory || []).find((x) => x.index === v("index"));
      lines.push(`GPU ${v("index")}${inv && inv.name ? " · " + inv.name : ""}`);
      lines.push(`util ${fmt.num(v("utilization"))}% · mem ${fmt.num(v("memory_utilization"))}%`);
      lines.push(`VRAM ${fmt.num(v("vram_used_mb"))} / ${fmt.num(v("vram_total_mb"))} MiB`);
      lines.push(`${fmt.num(v("temperature_c"))} °C · ${fmt.num(v("power_w"))} / ${fmt.num(v("power_limit_w"))} W · ${fmt.num(v("sm_clock_mhz"))} MHz`);
      if (v("xid_errors") || v("ecc_errors")) lines.push(`XID ${v("xid_errors")} · ECC ${v("ecc_errors")}`);
    } else if (n.host) {
      lines.push(`CPU ${fmt.num(n.host.cpu_percent)}% · RAM ${fmt.num(n.host.ram_used_mb)} / ${fmt.num(n.host.ram_total_mb)} MiB (no NVML)`);
    }
    lines.push(`reading ${fmt.ago(n.ts)}`);
    return lines.join("\n");
  }
  let hovered = null;
  wall.addEventListener("mousemove", (ev) => {
    const cell = cellAt(ev);
    hovered = cell;
    if (!cell) { tip.hidden = true; return; }
    tip.textContent = tipText(cell);
    tip.style.left = `${ev.pageX + 12}px`;
    tip.style.top = `${ev.pageY + 12}px`;
    tip.hidden = false;
  });
  wall.addEventListener("mouseleave", () => { hovered = null; tip.hidden = true; });
  wall.addEventListener("click", (ev) => {
    const cell = cellAt(ev);
    if (cell) location.href = `/ops/nodes/${encodeURIComponent(cell.node.name)}/`;
  });
  metricSelect.addEventListener("change", () => { wantFull = true; });

  // --- the node table: filtered, sorted, paged; rows reused -----------------------------
  const table = document.getElementById("node-table");
  const tbody = table.querySelector("tbody");
  const filters = {
    state: document.getElementById("filter-state"),
    model: document.getElementById("filter-model"),
    tenant: document.getElementById("filter-tenant"),
    name: document.getElementById("filter-name"),
  };
  const pager = {prev: document.getElementById("page-prev"), next: document.getElementById("page-next"), info: document.getElementById("page-info")};
  let sortKey = "name", sortDir = 1, page = 0;
  const rows = new Map(); // node id -> {tr, cells}
  const SORTS = {
    name: (n) => n.name, state: (n) => STATES.indexOf(liveState(n)), gpus: (n) => (n.gpus || []).length,
    util: (n) => n._util ?? -1, vram: (n) => n._vram ?? -1, temp: (n) => n._temp ?? -1,
    jobs: (n) => (n.stats.jobs_running || 0) + (n.stats.jobs_queued || 0), success: (n) => n.stats.success_rate_5m ?? -1,
    agent: (n) => `${n.protocol_version}/${n.agent_version}`, refused: (n) => n.frames_refused || 0,
  };
  table.querySelector("thead").addEventListener("click", (ev) => {
    const th = ev.target.closest("th[data-sort]");
    if (!th) return;
    if (sortKey === th.dataset.sort) sortDir = -sortDir; else { sortKey = th.dataset.sort; sortDir = 1; }
    for (const h of table.querySelectorAll("th[data-sort]")) h.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
    wantTable = true;
  });
  for (const f of Object.values(filters)) f.addEventListener("input", () => { page = 0; wantTable = true; });
  pager.prev.addEventListener("click", () => { page = Math.max(0, page - 1); wantTable = true; });
  pager.next.addEventListener("click", () => { page += 1; wantTable = true; });

  const optionSets = {model: new Set(), tenant: new Set()};
  function refreshOptions() {
    for (const [key, attr] of [["model", "_model"], ["tenant", "dedicated_tenant"]]) {
      const values = new Set([...store.nodes.values()].map((n) => n[attr]).filter(Boolean));
      if (values.size === optionSets[key].size && [...values].every((v) => optionSets[key].has(v))) continue;
      optionSets[key] = values;
      const select = filters[key], keep = select.value;
      const opts = [el("option", {value: ""}, key === "model" ? "any GPU model" : "any tenant")];
      if (key === "tenant") opts.push(el("option", {value: "-"}, "shared nodes"));
      for (const v of [...values].sort()) opts.push(el("option", {value: v}, v));
      select.replaceChildren(...opts);
      select.value = keep;
    }
  }
  function matches(n) {
    if (filters.state.value && liveState(n) !== filters.state.value) return false;
    if (filters.model.value && n._model !== filters.model.value) return false;
    if (filters.tenant.value === "-" && n.dedicated_tenant) return false;
    if (filters.tenant.value && filters.tenant.value !== "-" && n.dedicated_tenant !== filters.tenant.value) return false;
    const q = filters.name.value.trim().toLowerCase();
    if (q && !n.name.toLowerCase().includes(q) && !(n.hostname || "").toLowerCase().includes(q)) return false;
    return true;
  }
  function rowFor(n) {
    let row = rows.get(n.id);
    if (row) return row;
    const tr = el("tr", {"data-node": n.name});
    const c = {};
    const nameTd = el("td");
    c.link = el("a", {href: `/ops/nodes/${encodeURIComponent(n.name)}/`});
    c.host = el("div", {class: "muted"});
    nameTd.append(c.link, c.host);
    const stateTd = el("td");
    c.state = el("span", {class: "state-badge", "data-testid": "state"});
    c.reason = el("div", {class: "muted"});
    stateTd.append(c.state, c.reason);
    for (const k of ["gpus", "util", "vram", "temp", "jobs", "success", "agent", "refused"]) c[k] = el("td", {class: `col-${k}`});
    c.last = el("td", {class: "last-action"});
    const actions = el("td", {class: "node-actions"});
    for (const [a, cls] of [["drain", "secondary"], ["resume", "secondary"], ["restart", "danger"]]) {
      actions.append(el("button", {type: "button", class: `button small ${cls}`, "data-action": a, "data-node": n.name}, a[0].toUpperCase() + a.slice(1)));
    }
    tr.append(nameTd, stateTd, c.gpus, c.util, c.vram, c.temp, c.jobs, c.success, c.agent, c.refused, c.last, actions);
    row = {tr, c};
    rows.set(n.id, row);
    return row;
  }
  function fillRow(row, n) {
    const c = row.c, st = liveState(n), s = n.stats || {};
    setText(c.link, n.name);
    setText(c.host, n.hostname || "");
    setText(c.state, st);
    if (c.state.className !== `state-badge state-${st}`) c.state.className = `state-badge state-${st}`;
    setText(c.reason, n.drained && st !== "draining" ? `drained · ${n.state_reason || ""}` : n.state_reason || "");
    setText(c.gpus, (n.gpus || []).length ? `${n.gpus.length} × ${n._model}` : n._model || "–");
    setText(c.util, n._util === null ? "–" : `${fmt.num(n._util)}%`);
    setText(c.vram, n._vram === null ? "–" : `${fmt.num(n._vram)}%`);
    setText(c.temp, n._temp === null ? "–" : `${fmt.num(n._temp)} °C`);
    setText(c.jobs, `${s.jobs_running || 0} / ${s.jobs_queued || 0}`);
    setText(c.success, fmt.pct(s.success_rate_5m));
    setText(c.agent, n.agent_version ? `${n.agent_version} · v${n.protocol_version}` : "–");
    setText(c.refused, n.frames_refused ? String(n.frames_refused) : "");
    c.refused.title = n.last_refusal || "";
    const la = n.last_action;
    if (la) {
      const key = `${la.id}:${la.outcome}:${la.message}`;
      if (c.last.dataset.key !== key) {
        c.last.dataset.key = key;
        c.last.replaceChildren(`${la.action}: `, el("strong", null, la.outcome), ` ${la.message || ""}`);
        c.last.className = `last-action outcome-${la.outcome}`;
      }
    }
  }
  function renderTable(dirty, full) {
    const all = [...store.nodes.values()].filter(matches);
    const key = SORTS[sortKey];
    all.sort((a, b) => {
      const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : a.name.localeCompare(b.name)) * sortDir;
    });
    const pages = Math.max(1, Math.ceil(all.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    const shown = all.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    setText(pager.info, `${all.length ? page * PAGE_SIZE + 1 : 0}–${page * PAGE_SIZE + shown.length} of ${all.length} nodes · page ${page + 1} of ${pages}`);
    pager.prev.disabled = page === 0;
    pager.next.disabled = page >= pages - 1;
    const wanted = shown.map((n) => rowFor(n).tr);
    for (const n of shown) if (full || dirty.has(n.id) || !rows.get(n.id).tr.isConnected) fillRow(rows.get(n.id), n);
    const current = [...tbody.children];
    if (current.length !== wanted.length || current.some((tr, i) => tr !== wanted[i])) tbody.replaceChildren(...wanted);
  }

  // --- aggregate charts: small canvas charts (a full plotly redraw per point was the page's
  // longest task; these draw in a millisecond or two) -----------------------------------
  class TimeChart {
    constructor(el, {title, series, max, stacked}) {
      this.el = el; this.series = series; this.max = max; this.stacked = stacked;
      this.points = []; // [t, values...]
      el.classList.add("time-chart");
      const head = el.appendChild(document.createElement("div"));
      head.className = "time-chart-title";
      head.textContent = title;
      this.canvas = el.appendChild(document.createElement("canvas"));
      this.legend = el.appendChild(document.createElement("div"));
      this.legend.className = "time-chart-legend";
      for (const s of series) {
        const item = this.legend.appendChild(document.createElement("span"));
        const swatch = item.appendChild(document.createElement("i"));
        swatch.style.background = s.colour;
        item.append(s.name);
      }
    }
    push(t, values) {
      this.points.push([t, ...values]);
      if (this.points.length > CHART_POINTS) this.points.shift();
      this.draw();
    }
    draw() {
      const ratio = window.devicePixelRatio || 1, w = this.el.clientWidth || 300, h = 170;
      const c = this.canvas;
      if (c.width !== w * ratio) { c.width = w * ratio; c.height = h * ratio; c.style.width = `${w}px`; c.style.height = `${h}px`; }
      const g = c.getContext("2d");
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      g.clearRect(0, 0, w, h);
      const left = 34, right = w - 6, top = 6, bottom = h - 18;
      const pts = this.points;
      const totals = pts.map((p) => (this.stacked ? p.slice(1).reduce((a, b) => a + (b || 0), 0) : Math.max(...p.slice(1).map((v) => v || 0))));
      const ymax = this.max || Math.max(1, ...totals) * 1.1;
      const t1 = pts.length ? pts[pts.length - 1][0] : Date.now(), t0 = t1 - CHART_POINTS * CHART_EVERY_MS;
      const X = (t) => left + ((t - t0) / (t1 - t0 || 1)) * (right - left), Y = (v) => bottom - (v / ymax) * (bottom - top);
      g.strokeStyle = "#e5e7eb"; g.fillStyle = "#6b7280"; g.font = "10px system-ui, sans-serif"; g.lineWidth = 1;
      for (let i = 0; i <= 4; i++) {
        const v = (ymax * i) / 4, y = Y(v);
        g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
        g.fillText(v >= 10 ? v.toFixed(0) : v.toFixed(1), 2, y + 3);
      }
      for (let m = 0; m <= 15; m += 5) {
        const x = X(t1 - m * 60000);
        if (x >= left) g.fillText(m ? `-${m} min` : "now", Math.min(x - 10, right - 24), h - 4);
      }
      if (pts.length < 2) return;
      if (this.stacked) {
        const base = pts.map(() => 0);
        this.series.forEach((s, k) => {
          g.beginPath();
          pts.forEach((p, i) => { const y = Y(base[i] + (p[k + 1] || 0)); i ? g.lineTo(X(p[0]), y) : g.moveTo(X(p[0]), y); });
          for (let i = pts.length - 1; i >= 0; i--) g.lineTo(X(pts[i][0]), Y(base[i]));
          g.closePath(); g.fillStyle = s.colour; g.globalAlpha = 0.7; g.fill(); g.globalAlpha = 1;
          pts.forEach((p, i) => { base[i] += p[k + 1] || 0; });
        });
        return;
      }
      // Series 0 is the mean (a line), series 1 the p95: the band between them is filled.
      const [mean, p95] = this.series;
      g.beginPath();
      pts.forEach((p, i) => { const y = Y(p[2] ?? 0); i ? g.lineTo(X(p[0]), y) : g.moveTo(X(p[0]), y); });
      for (let i = pts.length - 1; i >= 0; i--) g.lineTo(X(pts[i][0]), Y(pts[i][1] ?? 0));
      g.closePath(); g.fillStyle = p95.colour; g.globalAlpha = 0.25; g.fill(); g.globalAlpha = 1;
      for (const [k, s, width] of [[2, p95, 1], [1, mean, 2]]) {
        g.beginPath(); g.strokeStyle = s.colour; g.lineWidth = width;
        pts.forEach((p, i) => { const y = Y(p[k] ?? 0); i ? g.lineTo(X(p[0]), y) : g.moveTo(X(p[0]), y); });
        g.stroke();
      }
    }
  }
  const STATE_COLOURS = {online: "#16a34a", draining: "#d97706", restarting: "#2563eb", stuck: "#9333ea", offline: "#dc2626"};
  const charts = {
    util: new TimeChart(document.getElementById("chart-util"), {title: "GPU utilization, fleet (%): mean, band to p95", max: 100,
      series: [{name: "mean", colour: "#2563eb"}, {name: "p95", colour: "#60a5fa"}]}),
    vram: new TimeChart(document.getElementById("chart-vram"), {title: "VRAM used, fleet (% of each GPU): mean, band to p95", max: 100,
      series: [{name: "mean", colour: "#7e22ce"}, {name: "p95", colour: "#c084fc"}]}),
    states: new TimeChart(document.getElementById("chart-states"), {title: "Nodes by state", stacked: true,
      series: STATES.map((s) => ({name: s, colour: STATE_COLOURS[s]}))}),
  };
  function renderCharts(f) {
    const started = performance.now(), t = Date.now();
    charts.util.push(t, [f.utilMean, f.utilP95]);
    charts.vram.push(t, [f.vramMean, f.vramP95]);
    charts.states.push(t, STATES.map((s) => f.counts[s] || 0));
    timing.note("chart", performance.now() - started);
  }

  // --- the render loop ----------------------------------------------------------------------
  let wantFull = true, wantTable = true, lastChart = 0, pendingFigures = null, lastWidth = 0;
  function render() {
    const started = performance.now();
    const dirty = store.takeDirty();
    indexes();
    const width = wall.parentElement.clientWidth;
    if (store.structureChanged || width !== lastWidth) { relayout(); store.structureChanged = false; wantFull = true; lastWidth = width; }
    for (const id of wantFull ? store.nodes.keys() : dirty.keys()) { const n = store.nodes.get(id); if (n) derive(n); }
    const figures = fleetFigures();
    const alertCount = renderAlerts();
    renderSummary(figures, alertCount);
    renderWall(dirty, wantFull);
    const first = perf.firstRenderMs === null && store.nodes.size > 0;
    if (first) {
      perf.firstRenderMs = performance.now();
      // The page is up (summary, alerts, GPU wall): the node table follows in a task of its own.
      setTimeout(() => { refreshOptions(); renderTable(new Map(), true); }, 0);
    } else {
      refreshOptions();
      renderTable(dirty, wantFull || wantTable);
    }
    for (const a of store.actions.splice(0)) auditAppend(a);
    if (hovered) tip.textContent = tipText(hovered);
    wantFull = wantTable = false;
    pendingFigures = figures;
    // Age of what is on screen now: how old the newest reading of each live node is.
    const now = Date.now() / 1000, ages = [];
    for (const n of store.nodes.values()) if (n.ts && liveState(n) !== "offline") ages.push(now - n.ts);
    ages.sort((a, b) => a - b);
    perf.renders += 1;
    perf.ages.push({at: now, p50: quantile(ages, 0.5), max: ages.length ? ages[ages.length - 1] : null, ms: performance.now() - started});
    if (perf.ages.length > 600) perf.ages.shift();
    if (!first) timing.note("render", performance.now() - started);
  }
  function tick() {
    if (store.receivedAt || wantFull) render();
    // Charts in a task of their own, so one render never carries both.
    if (pendingFigures && Date.now() - lastChart >= CHART_EVERY_MS) {
      const f = pendingFigures;
      pendingFigures = null;
      lastChart = Date.now();
      renderCharts(f);
    }
  }
  let firstDone = false;
  connectLive(store, document.getElementById("live-status"), (msg) => {
    // The snapshot renders at once (time to first render); live batches wait for the tick.
    if (msg.type !== "snapshot") return;
    wantFull = true;
    if (!firstDone) { firstDone = true; render(); }
  });
  setInterval(tick, RENDER_EVERY_MS);
  window.addEventListener("resize", () => { wantFull = true; for (const c of Object.values(charts)) c.draw(); });
  actionsWire();
})();
