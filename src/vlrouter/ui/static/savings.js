/* Savings panel: GET /ui/api/savings over the chosen window; the method is printed under the numbers. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);

  function card(title, fig, fmt, note) {
    if (!fig || fig.actual === undefined) {
      return `<div class="card saving"><h2>${title}</h2><div class="big">–</div>` +
        `<p class="muted">${VL.esc((fig && fig.reason) || "not enough data in this window")}</p></div>`;
    }
    const max = Math.max(fig.actual, fig.all_cloud) || 1;
    const share = fig.saved_share;
    const line = (label, v, color) => `<div class="bar-line"><span class="muted">${label}</span><span class="track">` +
      `<span class="fill" style="width:${Math.max(1.5, (100 * v) / max)}%;background:var(${color})"></span></span>` +
      `<span class="v">${fmt(v)}</span></div>`;
    return `<div class="card saving"><h2>${title}</h2><div><span class="big">${fmt(fig.saved)}</span>` +
      `<span class="share ${fig.saved < 0 ? "neg" : ""}">${share === null ? "" : VL.pct(share, 1) + " saved"}</span></div>` +
      `<div class="compare">${line("routed", fig.actual, "--edge")}${line("all cloud", fig.all_cloud, "--cloud")}</div>` +
      `<p class="muted small">${note}</p></div>`;
  }

  async function show() {
    try {
      const d = await VL.api("/ui/api/savings?window=" + $("savings-window").value);
      const e = d.energy_j, l = d.latency_ms_mean;
      const eNote = `${e.rows} requests with an energy figure ${VL.sourceTag(e.sources)}; the all-cloud side is an estimate` +
        (e.cloud_scale !== null ? ` fitted to the cloud rows' logged joules (×${VL.num(e.cloud_scale, 3)})` : "");
      const lNote = l.rows ? `mean per request over ${l.rows} requests; cloud modelled as TTFT ${VL.ms(l.cloud_ttft_ms_p50)}` +
        ` + ${VL.num(l.cloud_tpot_ms_p50, 1)} ms per further token` : "";
      $("savings-cards").innerHTML =
        card("Energy", e, VL.joules, eNote) + card("Latency", l, VL.ms, lNote) +
        card("Cost", d.cost_usd, VL.usd, `${d.answered} answered: ${d.edge_answered} on the edge, ${d.cloud_answered} on the cloud`);
      $("savings-method").innerHTML = d.method.map((m) => `<li>${VL.esc(m)}</li>`).join("");
      $("savings-read").textContent = `Window: ${new Date(d.read.since * 1000).toLocaleString()} – ` +
        `${new Date(d.read.until * 1000).toLocaleString()}, ${d.read.rows} log rows` +
        (d.read.truncated ? " (the latest rows only: the window holds more)" : "") + ".";
      VL.ready("savings");
    } catch (err) {
      if (err.status !== 401) VL.banner("Savings: " + err.message);
    }
  }

  $("savings-window").onchange = show;
  VL.panel("savings", { show });
})();
