// modelmix dashboard. Every value from the server is put in the page with textContent
// (never innerHTML): route reasons, model names and errors are caller- or model-controlled.
// The master key lives in this tab's sessionStorage only and goes out as a Bearer header.
"use strict";
(function () {
  const STORE = "modelmix.masterKey";
  const $ = (id) => document.getElementById(id);
  const state = { key: sessionStorage.getItem(STORE), reqCursor: null, auditCursor: null,
                  overview: null };

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v;
      else if (k === "title") node.title = v;
      else node.dataset[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
    return node;
  }
  const td = (text, cls) => el("td", cls ? { class: cls } : {}, text);
  const usd = (v) => (v === null || v === undefined) ? "n/a" : "$" + Number(v).toFixed(Math.abs(v) < 1 ? 4 : 2);
  const int = (v) => Number(v || 0).toLocaleString("en-US");
  const time = (s) => new Date(s * 1000).toLocaleString();
  const windowParam = () => $("window").value;

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, params) {
    const query = new URLSearchParams(params || {});
    const resp = await fetch(`/ui/api/${path}?${query}`, {
      headers: { Authorization: `Bearer ${state.key}` }, cache: "no-store" });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new ApiError(resp.status, (body.error && body.error.message) || `HTTP ${resp.status}`);
    return body;
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  function signedIn(on) {
    $("board").hidden = !on;
    $("controls").hidden = !on;
    $("login").hidden = on;
    if (!on) {
      for (const body of document.querySelectorAll("tbody")) body.replaceChildren();
    }
  }

  function fill(tableId, rows) {
    $(tableId).querySelector("tbody").replaceChildren(...rows);
  }

  function bars(containerId, rows, nameKey, useTierClass) {
    const total = rows.reduce((s, r) => s + r.requests, 0) || 1;
    $(containerId).replaceChildren(...rows.map((r) => {
      const fill = el("div", { class: "fill" + (useTierClass ? " " + r[nameKey] : "") });
      fill.style.width = (100 * r.requests / total).toFixed(1) + "%";
      const share = `${int(r.requests)} (${(100 * r.requests / total).toFixed(0)}%)`;
      return el("div", { class: "bar", row: String(r[nameKey]) },
                el("span", { class: "name", title: String(r[nameKey]) }, r[nameKey]),
                el("div", { class: "track" }, fill), el("span", { class: "count" }, share));
    }));
  }

  function card(label, value, cls, name) {
    return el("div", { class: "card " + (cls || ""), card: name }, el("div", { class: "value" }, value),
              el("div", { class: "label" }, label));
  }

  async function loadStatus() {
    const s = await api("status");
    const overview = state.overview;
    $("ready").textContent = s.ready ? "ready" : "unavailable";
    $("ready").className = "badge " + (s.ready ? "ok" : "bad");
    const used = {};
    for (const d of (overview ? overview.by_deployment : [])) used[d.deployment] = d;
    fill("deployments", s.deployments.map((d) => {
      const u = used[d.name] || {};
      const circuit = el("span", { class: "badge state-" + d.breaker,
                                   title: d.blocked_reason || "" }, d.breaker);
      return el("tr", { deployment: d.name }, td(d.name), td(d.tier), td(d.hosting),
                td(d.available ? "yes" : "no: " + (d.unavailable_reason || "")),
                el("td", {}, circuit), td(int(d.failures), "num"),
                td(int(u.requests), "num"), td(int(u.errors), "num"), td(usd(u.cost_usd || 0), "num"),
                td(u.avg_latency_ms ? Number(u.avg_latency_ms).toFixed(0) : "", "num"));
    }));
    const select = $("f-deployment");
    if (select.options.length <= 1) {
      for (const d of s.deployments) select.append(el("option", {}, d.name));
      for (const o of select.options) if (o.textContent !== "any") o.value = o.textContent;
    }
  }

  function renderOverview(o) {
    const t = o.totals;
    $("totals").replaceChildren(
      card("requests", int(t.requests), "", "requests"),
      card("errors", int(t.errors), t.errors ? "bad" : "", "errors"),
      card("cache hits", int(t.hits), "", "hits"),
      card("cost", usd(t.cost_usd), "", "cost"),
      card("all-proprietary cost", usd(t.baseline_usd), "", "baseline"),
      card("saved", usd(t.saved_usd), "good", "saved"));
    bars("by-tier", o.by_tier, "tier", true);
    bars("by-reason", o.by_reason, "reason", false);
    bars("by-endpoint", o.by_endpoint, "endpoint", false);
    $("reference").textContent = o.reference
      ? `All-proprietary: every generating request's tokens at ${o.reference.deployment}'s prices ($${o.reference.input_cost_per_mtok} in / $${o.reference.output_cost_per_mtok} out per 1M tokens); saved = that - actual cost + cache savings.`
      : "No priced proprietary deployment in the catalog: no all-proprietary baseline.";
  }

  function renderSeries(s) {
    const fmt = (v) => "$" + (v >= 1 ? v.toFixed(2) : v.toFixed(4));
    window.MMCharts.line($("cost-chart"), s.points, [
      { key: "cost_usd", cls: "line-cost", label: "actual cost", swatch: "open" },
      { key: "baseline_usd", cls: "line-base", label: "all-proprietary", swatch: "prop" }], fmt);
    window.MMCharts.bars($("tier-chart"), s.points, [
      { key: "open", cls: "bar-open", label: "open", swatch: "open" },
      { key: "proprietary", cls: "bar-prop", label: "proprietary", swatch: "prop" }],
      (v) => int(Math.round(v)));
  }

  async function loadGuard() {
    const g = await api("guard", { window: windowParam() });
    const a = g.actions;
    $("guard-cards").replaceChildren(
      card("blocked", int(g.blocked), g.blocked ? "bad" : "", "blocked"),
      card("kept local", int(a["route-local"]), "", "route-local"),
      card("pseudonymised", int(a.pseudonymise), "", "pseudonymise"),
      card("allowed", int(a.allow), "", "allow"));
    fill("guard-groups", g.groups.map((r) => el("tr", {}, td(r.action), td(r.data_class),
      td(int(r.requests), "num"), td(int(r.blocked), "num"), td(int(r.pseudonymised), "num"),
      td(int(r.entities), "num"))));
  }

  async function loadAudit(cursor) {
    const params = { limit: "15" };
    if (cursor) params.before = cursor;
    const page = await api("audit", params);
    state.auditCursor = page.next;
    $("audit-older").disabled = !page.next;
    fill("audit", page.rows.map((r) => el("tr", {}, td(time(r.created_at)), td(r.request_id),
      td(r.action), td(r.data_class), td(r.rule),
      td(Object.entries(r.entities).map(([k, v]) => `${k} x${v}`).join(", ")),
      td(r.deployment), td(r.status_code, "num"))));
  }

  async function loadKeys() {
    const k = await api("keys", { window: windowParam() });
    const rows = k.keys.map((v) => {
      const ratio = v.max_budget ? Math.min(1, v.spend / v.max_budget) : 0;
      const meter = el("span", { class: "meter", title: v.max_budget ? `${(100 * ratio).toFixed(0)}% of budget` : "no budget" },
                       el("span", { class: "fill" + (ratio > 0.8 ? " high" : "") }));
      meter.firstChild.style.width = (100 * ratio).toFixed(0) + "%";
      return el("tr", { key: v.key_id }, td(`${v.key_id} (${v.key_prefix}...)`), td(v.key_alias || ""),
        td(v.max_budget === null ? "none" : usd(v.max_budget), "num"), td(usd(v.spend), "num"),
        el("td", {}, meter), td(int(v.window.requests), "num"), td(usd(v.window.cost_usd), "num"),
        td(v.revoked_at ? "revoked" : "active"));
    });
    for (const o of k.other) {
      rows.push(el("tr", { key: String(o.key_id) }, td(o.key_id === null ? "(no key)" : o.key_id),
        td(""), td(""), td(""), td(""), td(int(o.window.requests), "num"),
        td(usd(o.window.cost_usd), "num"), td("")));
    }
    fill("keys", rows);
  }

  async function loadRequests(cursor) {
    const params = { limit: "25" };
    if (cursor) params.before = cursor;
    if ($("f-deployment").value) params.deployment = $("f-deployment").value;
    if ($("f-key").value.trim()) params.key = $("f-key").value.trim();
    if ($("f-status").value) params.status = $("f-status").value;
    const page = await api("requests", params);
    state.reqCursor = page.next;
    $("req-older").disabled = !page.next;
    fill("requests", page.rows.map((r) => el("tr", { request: r.request_id },
      td(time(r.created_at)), td(r.endpoint || ""), td(r.requested_model || ""),
      td(r.deployment || ""),
      // two lines of the reason; the whole of it on hover (the learned router's is long)
      el("td", { class: "reason" },
         el("div", { class: "clamp", title: r.route_reason || "" }, r.route_reason || "")),
      td(r.key_id || ""),
      td(r.error ? `${r.status_code} ${r.error_type || ""}` : r.status_code, "num"),
      td(int(r.prompt_tokens + r.completion_tokens), "num"), td(usd(r.cost_usd), "num"),
      td(Number(r.latency_ms).toFixed(0), "num"), td(r.cache || ""))));
  }

  async function loadModels() {
    const resp = await fetch("/v1/models", { headers: { Authorization: `Bearer ${state.key}` } });
    if (!resp.ok) return;
    const body = await resp.json();
    const select = $("play-model");
    const chosen = select.value;
    select.replaceChildren(el("option", {}, "auto"), ...body.data
      .filter((m) => !(m.modelmix && m.modelmix.mode === "embedding"))
      .map((m) => el("option", {}, m.id)));
    for (const o of select.options) o.value = o.textContent;
    if (chosen) select.value = chosen;
  }

  async function loadAll() {
    try {
      const overview = await api("overview", { window: windowParam() });
      showError("");
      signedIn(true);
      state.overview = overview;
      renderOverview(overview);
      await Promise.all([loadStatus(), loadGuard(), loadKeys(),
                         api("series", { window: windowParam() }).then(renderSeries),
                         loadAudit(null), loadRequests(null), loadModels()]);
      document.body.dataset.loaded = String(Date.now());
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
        sessionStorage.removeItem(STORE);
        state.key = null;
        signedIn(false);
      }
      showError(err.message);
    }
  }

  async function play(event) {
    event.preventDefault();
    const meta = $("play-meta");
    meta.replaceChildren();
    $("play-answer").textContent = "...";
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { Authorization: `Bearer ${state.key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ model: $("play-model").value || "auto",
                             messages: [{ role: "user", content: $("play-prompt").value }] }) });
    const body = await resp.json().catch(() => ({}));
    const shown = [["status", String(resp.status)],
                   ["deployment", resp.headers.get("x-modelmix-deployment")],
                   ["route reason", resp.headers.get("x-modelmix-route-reason")],
                   ["cost USD", resp.headers.get("x-modelmix-cost-usd")],
                   ["request id", resp.headers.get("x-request-id")]];
    for (const [name, value] of shown) {
      meta.append(el("dt", {}, name), el("dd", { field: name }, value || ""));
    }
    $("play-answer").textContent = resp.ok
      ? ((body.choices && body.choices[0] && body.choices[0].message.content) || "")
      : ((body.error && body.error.message) || `HTTP ${resp.status}`);
  }

  function start() {
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("key").value.trim();
      $("key").value = "";
      if (!state.key) return;
      sessionStorage.setItem(STORE, state.key);
      loadAll();
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(STORE);
      state.key = null;
      signedIn(false);
    });
    $("refresh").addEventListener("click", loadAll);
    $("window").addEventListener("change", loadAll);
    $("f-apply").addEventListener("click", () => loadRequests(null).catch((e) => showError(e.message)));
    $("req-newest").addEventListener("click", () => loadRequests(null).catch((e) => showError(e.message)));
    $("req-older").addEventListener("click", () => loadRequests(state.reqCursor).catch((e) => showError(e.message)));
    $("audit-newest").addEventListener("click", () => loadAudit(null).catch((e) => showError(e.message)));
    $("audit-older").addEventListener("click", () => loadAudit(state.auditCursor).catch((e) => showError(e.message)));
    $("play").addEventListener("submit", (e) => play(e).catch((err) => showError(err.message)));
    if (state.key) loadAll();
    // live availability and circuit state: every 5 s while signed in
    setInterval(() => { if (state.key && !$("board").hidden) loadStatus().catch(() => {}); }, 5000);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
