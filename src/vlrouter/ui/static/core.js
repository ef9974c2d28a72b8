/* vlrouter console core: the API key, JSON calls to /ui/api, tabs, theme and small formatters.
   Each panel script registers itself with VL.panel(name, {show, hide}); no build step, no framework. */
"use strict";
const VL = (() => {
  const panels = {};
  const KEY = "vlrouter.key", THEME = "vlrouter.theme";
  let current = null;

  const key = () => localStorage.getItem(KEY) || "";
  const authHeaders = () => (key() ? { Authorization: "Bearer " + key() } : {});

  function banner(text, kind) {
    const b = document.getElementById("banner");
    b.hidden = !text;
    b.className = "banner" + (kind ? " " + kind : "");
    b.textContent = text || "";
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || "HTTP " + status);
      this.status = status; this.code = body && body.error && body.error.code;
    }
  }

  async function api(path, opts = {}) {
    const headers = { ...authHeaders(), ...(opts.headers || {}) };
    if (opts.json !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method: opts.json !== undefined ? "POST" : "GET", ...opts, headers,
      body: opts.json !== undefined ? JSON.stringify(opts.json) : opts.body });
    if (opts.raw) return resp;
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      const err = new ApiError(resp.status, body);
      if (resp.status === 401) needKey(err.message);
      throw err;
    }
    return body;
  }

  function needKey(message) {
    banner("This gateway needs an API key: " + message + ". Enter it at the top right.");
    document.getElementById("key-input").focus();
    document.body.dataset.auth = "refused";
  }

  function show(name) {
    if (!panels[name]) name = "live";
    if (current && current !== name && panels[current].hide) panels[current].hide();
    current = name;
    document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.dataset.panel !== name; });
    document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("active", a.dataset.tab === name));
    panels[name].show();
  }

  function setTheme(theme) {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem(THEME, theme);
    window.dispatchEvent(new Event("vl-theme"));
  }

  function start() {
    const saved = localStorage.getItem(THEME);
    const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    document.documentElement.dataset.theme = saved || (dark ? "dark" : "light");
    document.getElementById("theme").onclick = () =>
      setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
    const input = document.getElementById("key-input");
    input.value = key();
    document.getElementById("key-form").onsubmit = (ev) => {
      ev.preventDefault();
      localStorage.setItem(KEY, input.value.trim());
      banner("");
      delete document.body.dataset.auth;
      if (current) panels[current].show();
    };
    window.addEventListener("hashchange", () => show(location.hash.slice(1)));
    show(location.hash.slice(1) || "live");
  }

  // ---------------------------------------------------------------- formatting helpers
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;",
    '"': "&quot;", "'": "&#39;" }[c]));
  const num = (v, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "–"
    : Number(v).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 }));
  const pct = (v, digits = 0) => (v === null || v === undefined ? "–" : (v * 100).toFixed(digits) + "%");
  const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : num(v, 0) + " ms");
  function joules(v) {
    if (v === null || v === undefined) return "–";
    const a = Math.abs(v);
    if (a >= 3.6e6) return (v / 3.6e6).toFixed(2) + " kWh";
    if (a >= 3600) return (v / 3600).toFixed(2) + " Wh";
    return num(v, a < 1 ? 3 : 1) + " J";
  }
  const usd = (v) => (v === null || v === undefined ? "–" : Math.abs(v) < 0.01 ? "$" + v.toFixed(5) : "$" + v.toFixed(2));
  const time = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour12: false });
  const pill = (tier) => `<span class="pill ${esc(tier || "none")}">${esc(tier || "none")}</span>`;
  function sourceTag(sources) {
    const names = Object.keys(sources || {});
    if (!names.length) return '<span class="tag">no figure</span>';
    return names.map((s) => `<span class="tag ${s === "estimate" ? "estimate" : "measured"}">${
      s === "estimate" ? "estimate" : "measured · " + esc(s)}</span>`).join("");
  }
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const notRecorded = '<span class="notrec">not recorded</span>';
  function kv(obj, missing = notRecorded) {
    return '<dl class="kv">' + Object.entries(obj).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${
      v === null || v === undefined ? missing : typeof v === "object" ? "<code>" + esc(JSON.stringify(v)) + "</code>"
        : esc(v)}</dd>`).join("") + "</dl>";
  }
  // {row: {col: value}} as a table (numbers rounded), e.g. dev metrics per preset
  function table(rows, digits = 3) {
    const names = Object.keys(rows || {});
    if (!names.length) return notRecorded;
    const cols = [...new Set(names.flatMap((n) => Object.keys(rows[n] || {})))]
      .filter((c) => names.some((n) => rows[n][c] === null || typeof rows[n][c] !== "object"));
    const cell = (v) => (typeof v === "number" ? Number(v.toFixed(digits)) : v === null || v === undefined ? "–" : esc(v));
    return `<div class="table-scroll"><table class="table compact"><thead><tr><th></th>${cols.map((c) => `<th class="num">${esc(c)}</th>`).join("")}` +
      `</tr></thead><tbody>${names.map((n) => `<tr><td><b>${esc(n)}</b></td>${cols.map((c) =>
        `<td class="num mono">${cell(rows[n][c])}</td>`).join("")}</tr>`).join("")}</tbody></table></div>`;
  }
  // the last parts of a long path (the whole one in the tooltip)
  function shortPath(p, parts = 2) {
    if (!p) return null;
    const bits = String(p).split("/").filter(Boolean);
    return bits.length > parts ? "…/" + bits.slice(-parts).join("/") : String(p);
  }

  return { panel: (name, impl) => { panels[name] = impl; }, api, banner, start, key, authHeaders, ApiError,
    esc, num, pct, ms, joules, usd, time, pill, sourceTag, css, kv, table, shortPath, notRecorded,
    ready: (name) => { document.querySelector(`[data-panel="${name}"]`).dataset.ready = "1"; } };
})();
