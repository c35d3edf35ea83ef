// Shared by the fleet page and the node page: the live websocket, the node store, the
// confirm-and-POST ops actions and the audit log. Everything a node supplies (names,
// hostnames, GPU models, messages) reaches the page through textContent only.
(function () {
  "use strict";

  const cfg = JSON.parse(document.getElementById("ops-settings").textContent);

  const fmt = {
    num(v, d = 0) { return v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d); },
    pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; },
    ago(ts) {
      if (!ts) return "never";
      const s = Math.max(0, Date.now() / 1000 - ts);
      return s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`;
    },
  };

  // Text into an element, touching the DOM only when it changes.
  function setText(el, text) {
    const t = String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  // --- the node store: a snapshot, then numbered deltas merged as they arrive (no DOM work);
  // rendering happens on a timer. A batch is what changed since the one before it
  // (console/consumers/wire.py): per node the changed keys, and either every GPU row ("gpus")
  // or per changed GPU [position, field, value, field, value, ...] ("gpu_delta").
  class FleetStore {
    constructor() {
      this.nodes = new Map(); // id -> node
      this.fields = [];
      this.seq = null; // the last batch merged; null: waiting for a snapshot
      this.dirty = new Map(); // node id -> Set of changed GPU positions, or true: the whole node
      this.structureChanged = true; // nodes added/removed: re-layout
      this.receivedAt = 0;
      this.actions = [];
    }
    index(name) { return this.fields.indexOf(name); }
    // "ok", "gap" (a batch is missing: ask for a snapshot) or "skip" (ignored until the snapshot).
    merge(message) {
      if (message.type === "snapshot") {
        const seen = new Set();
        this.fields = message.gpu_fields;
        for (const n of message.nodes) { seen.add(n.id); this._mergeOne(n, true); }
        for (const id of [...this.nodes.keys()]) if (!seen.has(id)) { this.nodes.delete(id); this.dirty.delete(id); this.structureChanged = true; }
      } else if (message.type === "nodes") {
        if (this.seq === null || message.seq !== this.seq + 1) {
          const gap = this.seq !== null;
          this.seq = null;
          return gap ? "gap" : "skip";
        }
        this.fields = message.gpu_fields;
        for (const n of message.nodes) this._mergeOne(n, false);
      } else {
        return "skip";
      }
      this.seq = message.seq;
      this.receivedAt = Date.now();
      return "ok";
    }
    // whole: a snapshot's entry (empty keys left out) replaces the node; a delta merges into it.
    _mergeOne(update, whole) {
      const old = this.nodes.get(update.id);
      let node = old;
      if (!old || whole) {
        node = {id: update.id, gpus: [], stats: {}};
        this.nodes.set(update.id, node);
        this.structureChanged = true; // the wall's cells hold the node objects
      }
      const was = old && old.last_action, now = update.last_action;
      if (now && was && (now.id !== was.id || now.outcome !== was.outcome)) this.actions.push(now);
      const gpuCount = old ? old.gpus.length : 0;
      let cells = this.dirty.get(node.id) || new Set();
      for (const key of Object.keys(update)) {
        if (key === "gpu_delta") {
          for (const change of update.gpu_delta) {
            const row = node.gpus[change[0]];
            if (!row) continue;
            for (let i = 1; i < change.length; i += 2) row[change[i]] = change[i + 1];
            if (cells !== true) cells.add(change[0]);
          }
        } else {
          node[key] = update[key];
          // Readings' time and job figures change no cell; anything else (state, all rows) may change all.
          if (key !== "ts" && key !== "stats" && key !== "id") cells = true;
        }
      }
      if (whole) cells = true;
      if (node.gpus.length !== gpuCount) this.structureChanged = true;
      this.dirty.set(node.id, cells);
    }
    takeDirty() { const d = this.dirty; this.dirty = new Map(); return d; }
  }

  // The state a dashboard shows: a node the sweep has not yet marked offline greys out.
  function liveState(n) {
    if (n.state !== "offline" && n.ts && Date.now() / 1000 - n.ts > cfg.offline_after_s) return "offline";
    return n.state || "offline";
  }

  // Slowest piece of each kind of work (the browser benchmark reads it next to long tasks).
  const timing = (window.__opsTiming = {
    max: {},
    at: {},
    note(kind, ms) { if (!(this.max[kind] >= ms)) this.max[kind] = ms; },
    first(what) { if (this.at[what] === undefined) this.at[what] = performance.now(); },
  });

  // --- websocket with capped, jittered backoff ------------------------------------------
  // The page's head opens the first socket (templates/ops/_live_early.html) so the snapshot
  // travels while the scripts load; its messages wait in a queue until this adopts it.
  function connectLive(store, statusEl, onMessage) {
    let delay = 300;
    function opened() {
      timing.first("ws_open");
      delay = 300;
      if (statusEl) { statusEl.textContent = "live"; statusEl.className = "live-on"; }
    }
    function received(ws, data) {
      const started = performance.now();
      if (!timing.at.snapshot_received) timing.first("snapshot_received");
      const msg = JSON.parse(data);
      // Console -> page: from the batch's encoding to here (same clock on the benchmark's machine).
      if (msg.sent_at && timing.at.snapshot_received) timing.note("delivery", Date.now() - msg.sent_at * 1000);
      const outcome = store.merge(msg);
      // A missed batch: the next deltas do not apply to what we have; the snapshot replaces it.
      if (outcome === "gap" && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "resync"}));
      if (outcome === "ok" && onMessage) onMessage(msg);
      timing.note("message", performance.now() - started);
    }
    function adopt(ws) {
      ws.onopen = opened;
      ws.onmessage = (ev) => received(ws, ev.data);
      ws.onclose = () => {
        store.seq = null;
        if (statusEl) { statusEl.textContent = "reconnecting…"; statusEl.className = "live-off"; }
        // Capped at 3 s with jitter: after a console or Redis restart every browser is back within seconds.
        setTimeout(open, delay * (0.5 + Math.random() / 2));
        delay = Math.min(delay * 2, 3000);
      };
    }
    function open() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      adopt(new WebSocket(`${proto}//${location.host}${cfg.ws_path}`));
    }
    const early = window.__opsEarly;
    window.__opsEarly = null;
    if (early && early.ws.readyState <= WebSocket.OPEN) {
      adopt(early.ws);
      if (early.openedAt !== null) { timing.at.ws_open = early.openedAt; opened(); }
      for (const data of early.queue.splice(0)) received(early.ws, data);
    } else {
      open();
    }
  }

  // --- ops actions: confirm, POST, show the result; the ack arrives over the websocket ---
  const DESCRIBE = {
    drain: "Stop sending new jobs to this node. Running jobs finish. It stays drained until resumed, even if its agent restarts.",
    resume: "Let this node take new jobs again.",
    restart: "Drain, let in-flight jobs finish (or requeue them), clear engine caches and CUDA memory, reload the model, resume. Reports VRAM before and after.",
  };
  function actionsWire() {
    const dialog = document.getElementById("confirm-action");
    if (!dialog) return;
    const csrf = () => document.querySelector("#confirm-form [name=csrfmiddlewaretoken]").value;
    const result = document.getElementById("action-result");
    let pending = null;
    document.addEventListener("click", (ev) => {
      const btn = ev.target.closest("button[data-action]");
      if (!btn) return;
      pending = {node: btn.dataset.node, action: btn.dataset.action};
      document.getElementById("confirm-title").textContent = `${pending.action} ${pending.node}?`;
      document.getElementById("confirm-text").textContent = DESCRIBE[pending.action];
      document.getElementById("confirm-ok").textContent = pending.action[0].toUpperCase() + pending.action.slice(1);
      dialog.showModal();
    });
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "confirm" || !pending) return;
      const {node, action} = pending;
      pending = null;
      const resp = await fetch(`/ops/api/nodes/${encodeURIComponent(node)}/actions/`, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
        body: JSON.stringify({action}),
      });
      const body = await resp.json();
      if (result) {
        result.className = resp.ok ? "message message-info" : "message message-error";
        result.textContent = resp.ok ? `${action} sent to ${node}; waiting for the agent's acknowledgement…` : body.error.message;
      }
    });
  }

  // --- audit log: new or newly answered actions go on top, as text ----------------------
  function auditAppend(a) {
    const body = document.querySelector("#audit-log tbody");
    if (!body) return;
    const old = body.querySelector(`tr[data-action-id="${Number(a.id)}"]`);
    if (old) old.remove();
    const empty = body.querySelector("td[colspan]");
    if (empty) empty.parentElement.remove();
    const when = new Date(a.requested_at).toISOString().replace("T", " ").slice(0, 19);
    const tr = el("tr", {"data-action-id": String(Number(a.id))});
    const link = el("a", {href: `/ops/nodes/${encodeURIComponent(a.node)}/`}, a.node);
    const nodeTd = el("td"); nodeTd.append(link);
    tr.append(el("td", null, when), nodeTd, el("td", null, a.action), el("td", null, a.requested_by || "console"),
      el("td", {class: `outcome-${a.outcome}`}, a.outcome), el("td", null, a.message));
    body.prepend(tr);
    while (body.children.length > 50) body.lastElementChild.remove();
  }

  // Alerts of one node (the kinds the issue lists), each with a stable key.
  const THROTTLE_HW = 0x8 | 0x20 | 0x40 | 0x80; // HW slowdown, SW thermal, HW thermal, power brake
  function alertsOf(n, store, overheatC) {
    const out = [];
    const st = liveState(n);
    if (st === "offline" || st === "stuck") out.push({key: `${n.id}:${st}`, kind: st, node: n, text: `${n.name}: ${n.state_reason || st}`, since: st === "offline" ? n.last_seen_at || n.ts : null});
    if (n.frames_refused) out.push({key: `${n.id}:refused`, kind: "refused", node: n, text: `${n.name}: ${n.frames_refused} frame(s) refused (${n.last_refusal || ""})`, since: n.last_refusal_at});
    if (st === "offline") return out;
    const iIdx = store.index("index"), iTemp = store.index("temperature_c"), iXid = store.index("xid_errors"),
      iLast = store.index("last_xid"), iThr = store.index("throttle_reasons"), iEcc = store.index("ecc_errors");
    for (const g of n.gpus || []) {
      const idx = g[iIdx];
      if (g[iXid]) out.push({key: `${n.id}:${idx}:xid`, kind: "xid", node: n, text: `${n.name} GPU ${idx}: ${g[iXid]} XID error(s)${g[iLast] ? " (last XID " + g[iLast] + ")" : ""}`});
      if (g[iTemp] !== null && g[iTemp] >= overheatC) out.push({key: `${n.id}:${idx}:hot`, kind: "overheat", node: n, text: `${n.name} GPU ${idx} at ${fmt.num(g[iTemp])} °C`});
      if (g[iThr] & THROTTLE_HW) out.push({key: `${n.id}:${idx}:throttle`, kind: "throttle", node: n, text: `${n.name} GPU ${idx}: clocks throttled (0x${Number(g[iThr]).toString(16)})`});
      if (g[iEcc]) out.push({key: `${n.id}:${idx}:ecc`, kind: "ecc", node: n, text: `${n.name} GPU ${idx}: ${g[iEcc]} ECC error(s)`});
    }
    return out;
  }

  window.Ops = {timing, cfg, fmt, setText, el, FleetStore, liveState, connectLive, actionsWire, auditAppend, alertsOf};
})();
