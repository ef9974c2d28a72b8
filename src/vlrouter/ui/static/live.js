/* Live panel: GET /ui/api/live every refresh_s seconds while the panel is shown. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let timer = null;
  const tierColor = (t) => (t === "edge" ? "--edge" : t === "cloud" ? "--cloud" : "--s4");

  function kpi(label, value, sub) {
    return `<div class="kpi"><div class="label">${label}</div><div class="value">${value}</div>` +
      `<div class="sub">${sub || "&nbsp;"}</div></div>`;
  }

  function bar(label, value, max, color, text, cls = "") {
    const w = max > 0 && value !== null ? Math.max(1.5, (100 * value) / max) : 0;
    return `<div class="bar-line"><span class="muted">${label}</span><span class="track">` +
      `<span class="fill ${cls}" style="width:${w}%;background:var(${color})"></span></span>` +
      `<span class="v">${text}</span></div>`;
  }

  function latency(byTier) {
    const tiers = Object.entries(byTier);
    if (!tiers.length) return '<div class="empty">no answered request in this window</div>';
    const max = Math.max(...tiers.flatMap(([, g]) => [g.e2e_ms_p99 || 0, g.ttft_ms_p99 || 0]));
    return '<div class="tier-rows">' + tiers.map(([tier, g]) => `<div class="tier-row">${VL.pill(tier)}<div class="bars">` +
      bar("TTFT", g.ttft_ms_p99, max, tierColor(tier), VL.ms(g.ttft_ms_p50) + " · " + VL.ms(g.ttft_ms_p99)) +
      bar("e2e", g.e2e_ms_p99, max, tierColor(tier), VL.ms(g.e2e_ms_p50) + " · " + VL.ms(g.e2e_ms_p99)) +
      `</div></div>`).join("") + '</div><p class="muted small">bars: p99; figures: p50 · p99, measured at the gateway</p>';
  }

  function energy(byTier) {
    const tiers = Object.entries(byTier);
    if (!tiers.length) return '<div class="empty">no answered request in this window</div>';
    const max = Math.max(...tiers.map(([, g]) => g.joules_per_request || 0));
    return '<div class="tier-rows">' + tiers.map(([tier, g]) => `<div class="tier-row">${VL.pill(tier)}<div>` +
      bar("J/req", g.joules_per_request, max, tierColor(tier), VL.joules(g.joules_per_request)) +
      `<div class="small muted">${g.energy_rows} of ${g.requests} requests with a figure ${VL.sourceTag(g.energy_sources)}</div>` +
      `</div></div>`).join("") + '</div><p class="muted small">"estimate" figures are models (per-token or CPU-time), ' +
      "not meter readings.</p>";
  }

  function hbars(entries, color, unit) {
    if (!entries.length) return "";
    const max = Math.max(...entries.map(([, v]) => v));
    return entries.map(([k, v]) => `<div class="hbar"><span class="mono">${VL.esc(k)}</span><span class="track">` +
      `<span class="fill" style="width:${(100 * v) / max}%;background:var(${color})"></span></span>` +
      `<span class="v">${unit ? unit(v) : v}</span></div>`).join("");
  }

  function misc(d) {
    const fb = Object.entries(d.fallbacks_by_backend).sort((a, b) => b[1] - a[1]);
    const enc = Object.entries(d.cache.by_encoder).map(([k, v]) => [k, v.hit_rate || 0]);
    return `<dl class="kv"><dt>fallbacks</dt><dd>${d.fallbacks} of ${d.answered} answered</dd>` +
      `<dt>feature cache</dt><dd>${d.cache.lookups ? VL.pct(d.cache.hit_rate, 1) + " hits of " + d.cache.lookups +
        " lookups (this process, since start)" : VL.notRecorded + " (no feature lookups)"}</dd></dl>` +
      (fb.length ? '<h2 style="margin-top:14px">fell back from</h2>' + hbars(fb, "--warn") : "") +
      (enc.length ? '<h2 style="margin-top:14px">cache hit rate by encoder</h2>' + hbars(enc, "--edge", (v) => VL.pct(v)) : "");
  }

  function render(d) {
    const errors = Object.entries(d.errors).sort((a, b) => b[1] - a[1]);
    const nErr = errors.reduce((s, [, v]) => s + v, 0);
    $("live-kpis").innerHTML = [
      kpi("requests", VL.num(d.requests, 0), "in the last " + Math.round(d.window_s / 60) + " min"),
      kpi("rate", VL.num(d.requests / d.window_s, 2) + "/s", "last bucket " + VL.num(d.series.rate_per_s.at(-1), 2) + "/s"),
      kpi("edge share", VL.pct(d.edge_share), d.answered + " answered"),
      kpi("fallbacks", VL.num(d.fallbacks, 0), "answered by the other tier"),
      kpi("errors", VL.num(nErr, 0), d.requests ? VL.pct(nErr / d.requests, 1) + " of requests" : ""),
      kpi("feature cache", VL.pct(d.cache.hit_rate), d.cache.lookups + " lookups"),
    ].join("");
    const t = d.series.t.map((x) => x + d.bucket_s / 2);
    VL.lineChart($("chart-rate"), t, [{ label: "req/s", values: d.series.rate_per_s, color: "--accent", fill: true }],
      { yFmt: (v) => VL.num(v, 2), empty: "no requests in this window" });
    const share = Object.entries(d.series.edge_share).map(([name, values]) => ({ label: name, values }));
    VL.lineChart($("chart-share"), t, share, { yFmt: (v) => VL.pct(v), yRange: [0, 1], points: true,
      legend: true, empty: "no answered request in this window" });
    $("live-latency").innerHTML = latency(d.by_tier);
    $("live-energy").innerHTML = energy(d.by_tier);
    $("live-errors").innerHTML = hbars(errors, "--bad") || '<div class="empty">no errors in this window</div>';
    $("live-misc").innerHTML = misc(d);
    $("live-updated").textContent = "updated " + VL.time(d.now) + (d.read.truncated ? " · latest rows only" : "");
    VL.ready("live");
  }

  async function refresh() {
    clearTimeout(timer);
    let every = 5;
    try {
      const d = await VL.api("/ui/api/live?window=" + $("live-window").value);
      every = d.refresh_s;
      render(d);
    } catch (err) {
      if (err.status === 401) return; // the key form restarts the panel
      VL.banner("Live: " + err.message);
    }
    timer = setTimeout(refresh, every * 1000);
  }

  $("live-window").onchange = refresh;
  VL.panel("live", { show: refresh, hide: () => clearTimeout(timer) });
})();
