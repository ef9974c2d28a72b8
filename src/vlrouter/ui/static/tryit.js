/* Try-it panel: the router's decision at once (POST /ui/api/route, nothing generated), then the real request
   streamed from /v1/chat/completions, then its logged record; feedback goes to /v1/feedback. */
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const W = ["speed", "quality", "energy"];
  let presets = { fast: [0.6, 0.3, 0.1], quality: [0.1, 0.8, 0.1], energy: [0.1, 0.3, 0.6] };
  let preset = "quality", image = null, requestId = null, previewTimer = null, loaded = false;
  let floors = {}, scenarioFloors = false;

  function weights() { return W.map((k) => Number($("w-" + k).value)); }
  function scenario() {
    if (preset) return preset;
    const w = weights(), sum = w.reduce((a, b) => a + b, 0) || 1;
    return Object.fromEntries(W.map((k, i) => [k, +(w[i] / sum).toFixed(4)]));
  }

  function sync() {
    const sum = weights().reduce((a, b) => a + b, 0) || 1;
    W.forEach((k) => { $("w-" + k).nextElementSibling.value = ((100 * $("w-" + k).value) / sum).toFixed(0) + "%"; });
    $("w-floor").disabled = !$("floor-on").checked;
    $("w-floor").nextElementSibling.value = $("floor-on").checked ? $("w-floor").value + "%" : "off";
    document.querySelectorAll("#try-presets .chip").forEach((c) => c.classList.toggle("active", c.dataset.preset === preset));
    $("try-custom").hidden = !!preset;
  }

  function setPreset(name) {
    preset = name;
    presets[name].forEach((v, i) => { $("w-" + W[i]).value = Math.round(v * 100); });
    if (floors[name] !== undefined) $("w-floor").value = Math.round(floors[name] * 100);
    sync();
    schedulePreview();
  }

  function body(stream) {
    const content = [];
    if (image) content.push({ type: "image_url", image_url: { url: image } });
    content.push({ type: "text", text: $("try-text").value });
    const b = { model: "vlrouter-auto", messages: [{ role: "user", content }], scenario: scenario(),
      max_tokens: Number($("try-max").value) || 48, stream };
    if ($("floor-on").checked) {
      const floor = Number($("w-floor").value) / 100;
      if (!scenarioFloors) b.min_quality = floor; // the body field of a gateway that reads floors there
      else b.scenario = typeof b.scenario === "string" ? { name: b.scenario, min_quality: floor }
        : { ...b.scenario, min_quality: floor };
    }
    if (stream) b.stream_options = { include_usage: true };
    return b;
  }

  function renderDecision(d) {
    const margin = d.scores.margin ?? d.scores.cloud_benefit ?? d.scores.p_cloud;
    const rel = margin === undefined || d.threshold === null ? "" : margin >= d.threshold ? "≥" : "<";
    $("try-decision").innerHTML = `<h2>Decision</h2><div class="decision-head">${VL.pill(d.tier)}` +
      `<span>${d.forced ? "forced by the request" : `policy <b>${VL.esc(d.policy)}</b>` +
        (rel ? ` · score <span class="mono">${margin.toFixed(3)}</span> ${rel} τ <span class="mono">${d.threshold.toFixed(3)}</span>` : "")}` +
      `${d.model ? ` · model <span class="mono">${VL.esc(d.model)}</span>` : ""}</span></div>` +
      `<p class="muted small">${VL.esc(d.reason)}</p>` + explanation(d) +
      `<h3>scores</h3><div class="scores">${Object.entries(d.scores).map(([k, v]) =>
        `<div><span class="mono">${VL.esc(k)}</span><span class="mono">${Number(v).toFixed(3)}</span></div>`).join("")}</div>`;
    $("try-decision").dataset.tier = d.tier;
  }

  function explanation(d) {
    const e = d.explanation || {}, lines = [];
    const floor = d.floor ?? e.min_quality ?? (d.scenario && d.scenario.min_quality);
    if (floor !== undefined && floor !== null) {
      lines.push(`quality floor <b>${VL.pct(floor)}</b>${e.floor_status ? ` · ${VL.esc(e.floor_status)}` : ""}` +
        (e.quality_weight !== undefined ? ` · decided with quality weight ${VL.num(e.quality_weight, 2)}` : ""));
    }
    if (e.quality) lines.push("predicted quality " + Object.entries(e.quality).map(([t, q]) =>
      `${VL.pill(t)} <span class="mono">${Number(q).toFixed(3)}</span>`).join(" "));
    if (e.top_features) lines.push('features that moved it <span class="chips">' + e.top_features.map((f) =>
      `<span class="mono">${VL.esc(f.name)} ${f.effect >= 0 ? "+" : ""}${Number(f.effect).toFixed(3)}</span>`).join("") +
      '</span> <span class="muted">(+: towards the cloud)</span>');
    return lines.length ? `<div class="explain">${lines.map((l) => `<div>${l}</div>`).join("")}</div>` : "";
  }

  async function preview() {
    if (!$("try-text").value.trim()) return null;
    try {
      const d = await VL.api("/ui/api/route", { json: body(false) });
      renderDecision(d);
      return d;
    } catch (err) {
      $("try-decision").innerHTML = `<h2>Decision</h2><p class="muted">${VL.esc(err.message)}</p>`;
      return null;
    }
  }
  function schedulePreview() { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 250); }

  async function stream(resp, out) {
    const reader = resp.body.getReader(), dec = new TextDecoder();
    let buf = "", usage = null, text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const line = buf.slice(0, cut).trim();
        buf = buf.slice(cut + 2);
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const ev = JSON.parse(line.slice(6));
        if (ev.error) throw new Error(ev.error.message);
        if (ev.usage) usage = ev.usage;
        const delta = ev.choices && ev.choices[0] && ev.choices[0].delta;
        if (delta && delta.content) { text += delta.content; out.textContent = text.trimStart(); }
      }
    }
    return usage;
  }

  async function logged(id) {
    for (let i = 0; i < 10; i++) { // the log writer flushes every 50 ms
      try { return await VL.api("/ui/api/decisions/" + encodeURIComponent(id)); } catch (err) {
        if (err.status !== 404) return null;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    return null;
  }

  async function ask(ev) {
    ev.preventDefault();
    const out = $("try-answer");
    $("try-go").disabled = true;
    $("try-feedback").hidden = true;
    $("try-feedback-state").textContent = "";
    out.textContent = "";
    $("try-served").textContent = "";
    out.classList.add("streaming");
    try {
      await preview();
      const resp = await VL.api("/v1/chat/completions", { json: body(true), raw: true });
      if (!resp.ok) {
        const e = await resp.json().catch(() => ({}));
        throw new VL.ApiError(resp.status, e);
      }
      requestId = resp.headers.get("x-request-id");
      $("try-served").textContent = `answered by ${resp.headers.get("x-vlrouter-backend")} (${resp.headers.get("x-vlrouter-tier")})` +
        (resp.headers.get("x-vlrouter-fallback-from") ? ` after ${resp.headers.get("x-vlrouter-fallback-from")} failed` : "");
      const usage = await stream(resp, out);
      const rec = await logged(requestId);
      const r = rec && rec.record;
      if (r) {
        $("try-served").textContent += ` · ${VL.ms(r.e2e_ms)} · TTFT ${VL.ms(r.ttft_ms)} · ${VL.joules(r.energy_j)}` +
          (r.energy_source === "estimate" ? " (estimate)" : r.energy_source ? ` (${r.energy_source})` : "") +
          (r.explore ? " · exploration: a random tier, not the router's pick" : "");
      } else if (usage) {
        $("try-served").textContent += ` · ${usage.completion_tokens} tokens`;
      }
      $("try-feedback").hidden = false;
      $("try-answer-card").dataset.done = "1";
    } catch (err) {
      out.textContent = "Error: " + err.message;
    } finally {
      out.classList.remove("streaming");
      $("try-go").disabled = false;
    }
  }

  async function feedback(score) {
    try {
      await VL.api("/v1/feedback", { json: { request_id: requestId, score } });
      $("try-feedback-state").textContent = "thanks: recorded " + score;
    } catch (err) {
      $("try-feedback-state").textContent = err.message;
    }
  }

  function pickImage(file) {
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      image = reader.result;
      $("try-preview").src = image;
      $("try-preview").hidden = false;
      $("try-drop-text").hidden = true;
      schedulePreview();
    };
    reader.readAsDataURL(file);
  }

  async function show() {
    sync();
    if (loaded) return;
    try {
      const r = await VL.api("/ui/api/router");
      for (const [name, p] of Object.entries(r.presets)) {
        if (p.weights) presets[name] = W.map((k) => p.weights[k]);
        if (p.min_quality !== undefined) floors[name] = p.min_quality;
      }
      scenarioFloors = r.scenario_floors;
      $("floor-note").textContent = scenarioFloors || r.accepts_min_quality
        ? "Ticked, the floor goes with the request as min_quality; unticked, the scenario's own floor applies."
        : "This gateway's router has no quality floors yet: min_quality is sent and ignored.";
      if (floors[preset] !== undefined) $("w-floor").value = Math.round(floors[preset] * 100);
      loaded = true;
      VL.ready("try");
    } catch (err) {
      if (err.status !== 401) VL.banner("Try it: " + err.message);
    }
  }

  $("try-image").onchange = (ev) => pickImage(ev.target.files[0]);
  $("try-form").onsubmit = ask;
  $("try-text").oninput = schedulePreview;
  document.querySelectorAll("#try-presets .chip").forEach((c) => { c.onclick = () => setPreset(c.dataset.preset); });
  W.forEach((k) => { $("w-" + k).oninput = () => { preset = null; sync(); schedulePreview(); }; });
  $("floor-on").onchange = () => { sync(); schedulePreview(); };
  $("w-floor").oninput = () => { sync(); schedulePreview(); };
  document.querySelectorAll("#try-feedback [data-score]").forEach((b) => { b.onclick = () => feedback(Number(b.dataset.score)); });
  VL.panel("try", { show });
})();
