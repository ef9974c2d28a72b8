/* Decisions panel: the latest logged requests; a click opens the full record and the router's reasons. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let rows = [];

  function gauge(r, span) {
    if (r.margin === null || r.threshold === null) return '<span class="muted">–</span>';
    const pos = (v) => Math.min(98, Math.max(2, 50 + (50 * (v - r.threshold)) / span));
    const color = r.margin >= r.threshold ? "--cloud" : "--edge";
    return `<span class="gauge"><span class="g"><span class="t" style="left:50%"></span>` +
      `<span class="m" style="left:calc(${pos(r.margin)}% - 2px);background:var(${color})"></span></span>` +
      `<span class="mono small">${r.margin.toFixed(2)} / ${r.threshold.toFixed(2)}</span></span>`;
  }

  function feedback(score) {
    if (score === null || score === undefined) return '<span class="muted">–</span>';
    return `<span class="tag ${score >= 0.5 ? "measured" : "estimate"}">${score >= 0.5 ? "✓" : "✗"} ${score}</span>`;
  }

  function line(r, span) {
    const tier = r.tier || (r.error_code ? "none" : r.decided_tier);
    const energy = r.energy_j === null ? "–" : VL.joules(r.energy_j) +
      (r.energy_source === "estimate" ? ' <span class="tag estimate">est.</span>' : "");
    const backend = r.fallback_from ? `${VL.esc(r.backend)} <span class="tag estimate">fell back</span>` : VL.esc(r.backend || "–");
    return `<tr data-id="${VL.esc(r.request_id)}" data-ts="${r.ts}"><td class="mono">${VL.time(r.ts)}</td>` +
      `<td>${VL.esc(r.scenario_name || "–")}</td><td>${VL.pill(tier)}${r.error_code ? ` <span class="tag">${VL.esc(r.error_code)}</span>` : ""}` +
      `${r.explore ? ' <span class="tag">explore</span>' : ""}</td><td>${backend}</td><td>${gauge(r, span)}</td>` +
      `<td>${r.min_quality === null ? '<span class="muted">–</span>' : VL.pct(r.min_quality)}</td>` +
      `<td class="num">${VL.ms(r.e2e_ms)}</td><td class="num">${energy}</td><td>${feedback(r.feedback_score)}</td></tr>`;
  }

  async function show() {
    try {
      const d = await VL.api("/ui/api/decisions?window=86400&limit=100");
      rows = d.data;
      const span = Math.max(0.05, ...rows.filter((r) => r.margin !== null && r.threshold !== null)
        .map((r) => Math.abs(r.margin - r.threshold))) * 1.1;
      const body = $("decisions-table").querySelector("tbody");
      body.innerHTML = rows.map((r) => line(r, span)).join("") ||
        '<tr><td colspan="9" class="empty">no request logged in the last 24 h</td></tr>';
      body.querySelectorAll("tr[data-id]").forEach((tr) => { tr.onclick = () => open(tr); });
      VL.ready("decisions");
    } catch (err) {
      if (err.status !== 401) VL.banner("Decisions: " + err.message);
    }
  }

  function scoresTable(scores) {
    const entries = Object.entries(scores || {});
    if (!entries.length) return VL.notRecorded;
    return '<div class="scores">' + entries.map(([k, v]) => `<div><span class="mono">${VL.esc(k)}</span>` +
      `<span class="mono">${typeof v === "number" ? v.toFixed(4) : VL.esc(v)}</span></div>`).join("") + "</div>";
  }

  async function open(tr) {
    document.querySelectorAll("#decisions-table tr.selected").forEach((x) => x.classList.remove("selected"));
    tr.classList.add("selected");
    const el = $("decision-detail");
    try {
      const d = await VL.api(`/ui/api/decisions/${encodeURIComponent(tr.dataset.id)}?ts=${tr.dataset.ts}`);
      const r = d.record;
      const pick = (keys) => Object.fromEntries(keys.map((k) => [k, k === "ts" ? new Date(r.ts * 1000).toISOString() : r[k]]));
      el.innerHTML = `<h2>Request <span class="muted mono">${VL.esc(r.request_id)}</span></h2>` +
        `<ul class="why">${d.why.map((w) => `<li>${VL.esc(w)}</li>`).join("")}</ul>` +
        VL.kv(pick(["ts", "endpoint", "model_requested", "scenario_name", "w_speed", "w_quality", "w_energy", "policy",
          "decided_tier", "tier", "backend", "threshold", "min_quality", "fallback_from", "explore", "status",
          "error_code", "route_ms", "queue_ms", "ttft_ms", "tpot_ms", "e2e_ms", "prompt_tokens", "completion_tokens",
          "energy_j", "energy_source", "feedback_score"]), "–") +
        `<h2 style="margin-top:14px">scores</h2>${scoresTable(r.scores)}` +
        `<h2 style="margin-top:14px">explanation</h2>${r.explanation ? `<pre class="json">${VL.esc(JSON.stringify(r.explanation, null, 2))}</pre>` : VL.notRecorded}` +
        `<details><summary class="muted">full record</summary><pre class="json">${VL.esc(JSON.stringify(r, null, 2))}</pre></details>`;
      el.dataset.loaded = r.request_id;
    } catch (err) {
      el.innerHTML = `<p class="muted">${VL.esc(err.message)}</p>`;
    }
  }

  $("decisions-refresh").onclick = show;
  VL.panel("decisions", { show });
})();
