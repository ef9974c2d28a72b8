/* Charts on uPlot (vendored, see vendor/uPlot-LICENSE.txt): themed, sized to their card, rebuilt on
   theme changes and resizes. VL.lineChart(el, x, series, opts); series: [{label, values, color}]. */
"use strict";
(() => {
  const live = new Map(); // element -> {plot, args}

  function axis(fmt) {
    return { stroke: VL.css("--muted"), grid: { stroke: VL.css("--line"), width: 1 },
      ticks: { stroke: VL.css("--line"), width: 1 }, font: "11px system-ui, sans-serif",
      values: fmt ? (u, vals) => vals.map(fmt) : undefined, size: 44 };
  }

  const resolve = (c, i) => (!c ? VL.css("--s" + ((i % 5) + 1)) : c.startsWith("--") ? VL.css(c) : c);
  function rgba(hex, a) {
    const h = hex.replace("#", "");
    const n = parseInt(h.length === 3 ? h.split("").map((c) => c + c).join("") : h, 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
  }

  function build(el, x, series, opts) {
    const width = Math.max(240, el.clientWidth || el.parentElement.clientWidth - 36);
    const cfg = {
      width, height: opts.height || 220, padding: [8, 18, 0, 4],
      scales: { x: { time: opts.time !== false }, y: { range: opts.yRange || ((u, lo, hi) => [0, hi > 0 ? hi * 1.1 : 1]) } },
      axes: [{ ...axis(opts.xFmt), size: 30 }, { ...axis(opts.yFmt), label: opts.yLabel, labelSize: opts.yLabel ? 16 : 0,
        labelFont: "11px system-ui, sans-serif" }],
      legend: { show: series.length > 1 || !!opts.legend, live: false },
      cursor: { points: { size: 6 } },
      series: [{ label: opts.xLabel || "time" }, ...series.map((s, i) => ({
        label: s.label, stroke: resolve(s.color, i), width: 2,
        fill: s.fill ? rgba(resolve(s.color, i), 0.14) : undefined, spanGaps: true, points: { show: !!opts.points, size: 5 },
        dash: s.dash, value: opts.yFmt ? (u, v) => (v === null ? "–" : opts.yFmt(v)) : undefined,
      }))],
    };
    el.innerHTML = "";
    return new uPlot(cfg, [x, ...series.map((s) => s.values)], el);
  }

  VL.lineChart = (el, x, series, opts = {}) => {
    const old = live.get(el);
    if (old) old.plot.destroy();
    if (!x.length || !series.length) {
      live.delete(el);
      el.innerHTML = `<div class="empty">${VL.esc(opts.empty || "no data in this window")}</div>`;
      return;
    }
    live.set(el, { plot: build(el, x, series, opts), args: [x, series, opts] });
  };

  function rebuild() {
    for (const [el, entry] of live) {
      if (!el.isConnected || el.offsetParent === null) continue;
      entry.plot.destroy();
      entry.plot = build(el, ...entry.args);
    }
  }
  window.addEventListener("vl-theme", rebuild);
  let timer = null;
  window.addEventListener("resize", () => { clearTimeout(timer); timer = setTimeout(rebuild, 150); });
})();
