/* Router panel: GET /ui/api/router; every field the checkpoint does not hold reads "not recorded". */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const card = (title, html) => `<div class="card"><h2>${title}</h2>${html}</div>`;

  // curve: {name: [[edge_share, retention], ...] | [{edge_share, quality_retention}, ...] | {name: ...}}
  function curveSeries(curve, prefix = "") {
    const out = [];
    for (const [name, pts] of Object.entries(curve || {})) {
      if (Array.isArray(pts)) {
        const xy = pts.map((p) => (Array.isArray(p) ? p : [p.edge_share, p.quality_retention ?? p.retention ?? p.quality]))
          .filter((p) => typeof p[0] === "number" && typeof p[1] === "number");
        if (xy.length) out.push({ label: prefix + name, xy });
      } else if (pts && typeof pts === "object") {
        out.push(...curveSeries(pts, prefix + name + " · "));
      }
    }
    return out;
  }

  // `vlrouter eval` stores {data, split, n, at, reference, floors, curves: {scenario: {name: points}}};
  // anything else holding point lists is drawn as it is
  function drawCurve(curve) {
    const pick = $("curve-scenario"), note = $("curve-note");
    const perScenario = curve && curve.curves && typeof curve.curves === "object" ? curve.curves : null;
    pick.hidden = !perScenario;
    if (perScenario) {
      const names = Object.keys(perScenario);
      const keep = names.includes(pick.value) ? pick.value : names.includes("quality") ? "quality" : names[0];
      pick.innerHTML = names.map((n) => `<option${n === keep ? " selected" : ""}>${VL.esc(n)}</option>`).join("");
      pick.onchange = () => drawCurve(curve);
      note.innerHTML = `retention of the all-cloud quality (${VL.esc(curve.reference || "reference")}) on ` +
        `${VL.esc(curve.data || "?")}, ${VL.esc(curve.split || "?")} split, ${VL.num(curve.n, 0)} queries` +
        (curve.at ? `, evaluated ${new Date(curve.at * 1000).toLocaleString()}` : "") +
        (curve.floors && Object.keys(curve.floors).length ? "<h3>floors on that evaluation</h3>" + VL.table(curve.floors) : "");
    } else {
      note.textContent = "";
    }
    const series = curveSeries(perScenario ? perScenario[pick.value] : curve);
    const el = $("chart-curve");
    if (!series.length) {
      el.innerHTML = `<div class="empty">${VL.notRecorded}: the checkpoint holds no curve from <code>vlrouter eval</code></div>`;
      return;
    }
    const xs = [...new Set(series.flatMap((s) => s.xy.map((p) => p[0])))].sort((a, b) => a - b);
    const data = series.map((s) => {
      const at = new Map(s.xy.map((p) => [p[0], p[1]]));
      return { label: s.label, values: xs.map((x) => (at.has(x) ? at.get(x) : null)),
        dash: /random/i.test(s.label) ? [5, 4] : undefined };
    });
    VL.lineChart(el, xs, data, { time: false, xLabel: "edge share", yLabel: "quality retention", xFmt: (v) => VL.pct(v), yFmt: (v) => VL.num(v, 3),
      yRange: (u, lo, hi) => [Math.max(0, lo - 0.05), hi + 0.02], legend: true, height: 260 });
  }

  function presetTable(r) {
    const fmtW = (w) => w.map((v) => v.toFixed(2)).join(" / ");
    const rows = Object.entries(r.presets).map(([name, p]) => {
      const w = ["speed", "quality", "energy"].map((k) => p.weights[k]);
      const op = p.operating_weights && fmtW(p.operating_weights) !== fmtW(w)
        ? `<div class="muted small">decides with ${fmtW(p.operating_weights)}${p.pinned !== undefined ? " (pinned)" : ""}</div>` : "";
      return `<tr><td><b>${VL.esc(name)}</b></td><td class="mono">${fmtW(w)}${op}</td>` +
      `<td class="num mono">${p.threshold === undefined ? "–" : p.threshold.toFixed(3)}</td>` +
      `<td class="num">${p.min_quality === undefined ? VL.notRecorded : VL.pct(p.min_quality)}</td></tr>`;
    }).join("");
    return `<table class="table"><thead><tr><th>preset</th><th>speed / quality / energy</th><th class="num">τ</th>` +
      `<th class="num">floor</th></tr></thead><tbody>${rows}</tbody></table>` +
      (r.floors ? "" : '<p class="muted small">Quality floors: not recorded in this checkpoint.</p>');
  }

  function spec(s) {
    if (!s) return card("FeatureSpec", `${VL.notRecorded} <span class="muted">(this policy reads no features)</span>`);
    return card("FeatureSpec <span class=\"muted mono\">" + VL.esc(s.describe) + "</span>",
      VL.kv({ version: s.version, image_encoder: s.image_encoder, image_dim: s.image_dim, text_encoder: s.text_encoder,
        text_dim: s.text_dim, extras_dim: s.extras_dim }) +
      `<h2 style="margin-top:14px">signals (${s.signals.length})</h2><div class="chips">${
        s.signals.map((x) => `<span class="mono">${VL.esc(x)}</span>`).join("")}</div>`);
  }

  const scalars = (o) => Object.fromEntries(Object.entries(o || {}).filter(([, v]) => v === null || typeof v !== "object"));

  function training(r) {
    if (!r.training && !r.hyperparameters) return VL.notRecorded;
    const t = r.training || {}, hp = r.hyperparameters || {};
    return VL.kv({ data: t.data, ...scalars(t) }) +
      (t.calibration && t.calibration.by_preset ? "<h3>threshold fit on dev, per preset</h3>" + VL.table(t.calibration.by_preset) : "") +
      "<h3>hyperparameters</h3>" + (r.hyperparameters ? '<div class="chips">' + Object.entries({ hidden: (hp.hidden || [])
        .join("×"), ...scalars(hp) }).map(([k, v]) => `<span class="mono">${VL.esc(k)} ${VL.esc(v)}</span>`).join("") + "</div>"
        : VL.notRecorded);
  }

  function calibration(r) {
    return (r.calibration ? VL.table(r.calibration) : `<p>${VL.notRecorded} <span class="muted">(no <code>vlrouter calibrate</code> ` +
      "run on this checkpoint)</span></p>") + "<h3>dev metrics per preset</h3>" + VL.table(r.dev_metrics);
  }

  function render(r) {
    $("router-top").innerHTML = card("Policy", VL.kv({ policy: r.policy, summary: r.describe,
      checkpoint: VL.shortPath(r.checkpoint),
      decision: r.decision, "default scenario": r.default_scenario, exploration: r.explore, "cascade band": r.cascade_band,
      features: r.features, "decision log": r.log_enabled ? "on" : "off" })) +
      card("Scenarios, thresholds and floors", presetTable(r) + (r.corner_taus ? `<p class="muted small">τ(w) = w · (${
        r.corner_taus.map((t) => t.toFixed(2)).join(", ")})</p>` : ""));
    $("router-spec").outerHTML = `<div id="router-spec">${spec(r.feature_spec)}</div>`;
    $("router-bottom").innerHTML = card("Training", training(r)) + card("Calibration", calibration(r)) +
      card("Models", r.models ? VL.kv(Object.fromEntries(r.models.map((m) => [m.name, m.tier]))) : VL.notRecorded) +
      card("Backends", VL.kv(Object.fromEntries(r.backends.map((b) => [b.name,
        `${b.tier} · ${b.kind} · ${b.model}${b.standin ? " (local stand-in)" : ""}`]))));
    drawCurve(r.curve);
    VL.ready("router");
  }

  async function show() {
    try { render(await VL.api("/ui/api/router")); } catch (err) {
      if (err.status !== 401) VL.banner("Router: " + err.message);
    }
  }
  VL.panel("router", { show });
})();
