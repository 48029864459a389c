// fullcycle's page: everything it shows comes from /api/* (the run's own record); it never runs anything itself.
"use strict";

const CSRF = document.querySelector('meta[name="csrf"]').content;
const $ = (id) => document.getElementById(id);
const LOG_LINES = 2000;
const STATE_WORDS = {waiting: "waiting", running: "running", done: "done", skipped: "skipped (up to date)",
  failed: "failed", interrupted: "interrupted", died: "died", "not run": "not run"};

let source = null;
let current = null;
let lastPhase = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value; else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function minutes(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return seconds < 90 ? `${seconds.toFixed(1)} s` : `${(seconds / 60).toFixed(1)} min`;
}

function money(value) { return typeof value === "number" ? `$${value.toFixed(2)}` : "—"; }

async function post(url, data) {
  const response = await fetch(url, {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-Fullcycle-Token": CSRF}, body: JSON.stringify(data)});
  const body = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
  return {ok: response.ok, status: response.status, body};
}

function notice(text, kind = "info") {
  const box = $("notice");
  box.textContent = text;
  box.className = kind;
}

// ------------------------------------------------------------------ Run tab

function banner(state) {
  const box = $("banner");
  const running = state.stages.find((s) => s.state === "running");
  const pod = state.pod;
  const adapter = state.outputs.find((o) => o.what === "adapter");
  let text;
  if (state.phase === "running") {
    text = `Running${running ? ` — ${running.stage}` : ""} (pid ${state.pid}). Closing this page does not stop it.`;
  } else if (state.phase === "idle") {
    text = `No run for ${state.date} yet. "Run Full Cycle Now" builds the dataset, rents a pod, trains, ` +
      "brings the adapter home and ends the pod.";
  } else if (state.success) {
    text = `Succeeded: the adapter for ${state.date} is in ${adapter.path}`;
  } else if (state.phase === "interrupted") {
    const cut = state.stages.find((s) => s.state === "interrupted");
    const where = cut ? ` during ${cut.stage}` : "";
    const fate = !pod ? "no pod was rented." : pod.terminated ? `pod ${pod.id} was terminated.`
      : `pod ${pod.id} may still be running: see the Pods tab.`;
    text = `Cancelled${where}; ${fate}`;
  } else {
    text = `Failed: ${state.error || "see the log"}`;
  }
  const kind = state.phase === "running" ? "running" : state.phase === "idle" ? "idle"
    : state.success ? "ok" : state.phase === "interrupted" ? "interrupted" : "failed";
  box.className = `banner ${kind}`;
  box.textContent = text;
  for (const warning of state.warnings || []) box.append(el("div", {class: "warning", text: `Warning: ${warning}`}));
}

function renderStages(state) {
  const body = $("stages").querySelector("tbody");
  body.replaceChildren(...state.stages.map((s) => {
    let time = minutes(s.seconds);
    if (s.state === "running" && s.started_at) time = minutes((Date.now() - Date.parse(s.started_at)) / 1000);
    const row = el("tr", {"data-stage": s.stage, "data-state": s.state},
      el("td", {}, el("span", {class: "stage", text: s.stage}), el("small", {text: s.help || ""}),
        s.error ? el("small", {class: "err", text: s.error}) : ""),
      el("td", {}, el("span", {class: `pill ${s.state.replace(" ", "-")}`, text: STATE_WORDS[s.state] || s.state})),
      el("td", {text: time}));
    if (s.error) row.title = s.error;
    return row;
  }));
}

function renderPod(state) {
  const dl = $("pod");
  const pod = state.pod;
  if (!pod) { dl.replaceChildren(el("dt", {text: "—"}), el("dd", {text: "no pod rented for this date yet"})); return; }
  const rows = [["Pod", pod.id], ["GPU", (pod.gpu || "—") + (pod.gpus > 1 ? ` × ${pod.gpus}` : "")], ["Cloud", pod.cloud || "—"],
    ["Connection", pod.connection_mode || "—"], ["Up", `${pod.minutes.toFixed(1)} min`],
    ["Cost so far", money(pod.cost_usd)],
    ["Billed by RunPod", state.provider === "local" ? "no bill: the local provider rents nothing"
      : pod.cost_usd_billed == null ? "not yet known" : money(pod.cost_usd_billed)],
    ["Why this GPU", pod.why || "—"], ["Image", pod.image || "—"],
    ["Not training", pod.not_training_share == null ? "—" : `${Math.round(pod.not_training_share * 100)}% of the pod's time`],
    ["Where the time went", pod.phases.length ? pod.phases.map(([name, s]) =>
      `${name.replaceAll("_", " ")} ${s < 1 ? s.toFixed(2) : s < 10 ? s.toFixed(1) : Math.round(s)}s`).join(" · ") : "—"],
    ["Terminated", pod.terminated ? `yes (${pod.terminated_at})` : pod.terminate_error ? `NO: ${pod.terminate_error}` : "not yet"]];
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {text: String(v)})]));
  dl.dataset.terminated = pod.terminated ? "yes" : "no";
  dl.dataset.notTraining = pod.not_training_share ?? "";
}

function renderOutputs(state) {
  $("outputs").replaceChildren(...state.outputs.map((o) => el("li", {class: o.exists ? "here" : "missing"},
    el("b", {text: `${o.what}: `}), el("code", {text: o.path}), o.exists ? "" : el("span", {text: " (not yet)"}))));
  const sent = state.notification;
  const box = $("notified");
  box.hidden = !sent;
  if (!sent) return;
  const parts = [];
  if (sent.command) parts.push(`command ${sent.command.timeout ? "timed out" : sent.command.error
    ? sent.command.error : `exit ${sent.command.exit}`}`);
  if (sent.url) parts.push(`${sent.url.host} ${sent.url.error ? sent.url.error : `HTTP ${sent.url.status}`}`);
  const failed = (sent.command && (sent.command.timeout || sent.command.error || sent.command.exit !== 0))
    || (sent.url && (sent.url.error || !sent.url.ok));
  box.className = failed ? "failed" : "ok";
  box.textContent = `Notified (${sent.outcome}, ${sent.at}): ${parts.join("; ")}`;
}

async function loadSchedule() {
  const box = $("schedule");
  const response = await fetch("/api/schedule", {credentials: "same-origin"});
  const found = response.ok ? await response.json() : null;
  if (!found || !found.kind) {
    box.className = "none";
    box.textContent = "no daily run (doit schedule --at 03:00 installs one)";
    return;
  }
  box.className = found.kind;
  box.textContent = `daily run at ${found.at} (${found.kind === "timer" ? "systemd timer" : "cron"}): next ${found.next || "unknown"}`;
}

function renderOthers(state) {
  const others = state.running_dates.filter((d) => d !== state.date);
  const box = $("others");
  box.hidden = others.length === 0;
  box.replaceChildren(...others.map((d) => {
    const link = el("a", {href: "#", text: `A run is going for ${d}: show it`});
    link.addEventListener("click", (e) => { e.preventDefault(); $("date").value = d; watch(d); });
    return link;
  }));
}

function render(state) {
  current = state;
  banner(state);
  renderStages(state);
  renderPod(state);
  renderOutputs(state);
  renderOthers(state);
  $("cancel").disabled = state.phase !== "running";
  document.body.dataset.phase = state.phase;
  if (lastPhase === "running" && state.phase !== "running") { loadHistory(); notice(""); }
  lastPhase = state.phase;
}

function appendLog(text) {
  const pre = $("log");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  pre.append(text + "\n");
  const lines = pre.textContent.split("\n");
  if (lines.length > LOG_LINES) pre.textContent = lines.slice(-LOG_LINES).join("\n");
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function watch(date) {
  if (source) source.close();
  $("log").textContent = "";
  $("log").dataset.empty = "(nothing logged for this date yet)";
  lastPhase = null;
  source = new EventSource(`/api/events?date=${encodeURIComponent(date)}`);
  source.addEventListener("state", (e) => render(JSON.parse(e.data)));
  source.addEventListener("log", (e) => appendLog(e.data));
  source.onerror = () => notice("Lost contact with the server; retrying…", "warn");
  source.onopen = () => { if ($("notice").className === "warn") notice(""); };
}

$("date").addEventListener("change", () => watch($("date").value));

$("run").addEventListener("click", async () => {
  const date = $("date").value;
  const answer = await post("/api/run", {date});
  if (answer.ok) notice(`Started the full cycle for ${date} (pid ${answer.body.pid}).`, "ok");
  else notice(answer.body.error || `refused (${answer.status})`, "error");
});

$("cancel").addEventListener("click", async () => {
  const date = $("date").value;
  if (!confirm(`Cancel the run for ${date}? The pod is terminated and the record kept.`)) return;
  const answer = await post("/api/cancel", {date});
  if (answer.ok) notice(`Cancelling the run for ${date}: terminating the pod…`, "warn");
  else notice(answer.body.error || `refused (${answer.status})`, "error");
});

setInterval(() => { if (current && current.phase === "running") renderStages(current); }, 1000);

// ------------------------------------------------------------------ History tab

function lossCurve(points, what = "training loss", unit = "step", label = (x) => x, reference = []) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 520, H = 180, PAD = 36;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "loss");
  svg.setAttribute("role", "img");
  if (!points.length) { svg.setAttribute("aria-label", "no loss recorded"); return svg; }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const all = ys.concat(reference.map((p) => p[1]));  // the reference (the base model's loss) shares the scale
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...all), Math.max(...all)];
  const sx = (x) => PAD + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - 2 * PAD);
  const sy = (y) => H - PAD + (y1 === y0 ? -0.5 : -(y - y0) / (y1 - y0)) * (H - 2 * PAD);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  add("line", {x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis"});
  add("line", {x1: PAD, y1: PAD, x2: PAD, y2: H - PAD, class: "axis"});
  if (reference.length) {
    const line = reference.length > 1 ? reference : [[x0, reference[0][1]], [x1, reference[0][1]]];
    const ends = x0 === x1 ? [[PAD, sy(line[0][1])], [W - PAD, sy(line[0][1])]] : line.map((p) => [sx(p[0]), sy(p[1])]);
    add("polyline", {points: ends.map((p) => p.join(",")).join(" "), class: "reference"});
    add("text", {x: W - PAD, y: ends[ends.length - 1][1] - 4, "text-anchor": "end", class: "reference-label"},
      "base model");
  }
  add("polyline", {points: points.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" "), class: "curve"});
  for (const p of points.length < 30 ? points : []) add("circle", {cx: sx(p[0]), cy: sy(p[1]), r: 3, class: "point"});
  add("text", {x: 4, y: PAD + 4}, y1.toFixed(3));
  add("text", {x: 4, y: H - PAD}, y0.toFixed(3));
  add("text", {x: PAD, y: H - 8}, `${unit} ${label(x0)}`);
  add("text", {x: W - PAD, y: H - 8, "text-anchor": "end"}, `${unit} ${label(x1)}`);
  add("text", {x: W / 2, y: 16, "text-anchor": "middle"}, `${what}, ${points.length} ${unit}s, last ${ys[ys.length - 1].toFixed(4)}`);
  svg.setAttribute("aria-label", `loss from ${ys[0].toFixed(3)} to ${ys[ys.length - 1].toFixed(3)}`);
  return svg;
}

function detail(row) {
  const attempts = el("table", {class: "attempts"}, el("thead", {}, el("tr", {},
    ...["Attempt", "Started", "Outcome", "Reached", "Pod", "Pod min", "Cost", "Error"].map((h) => el("th", {text: h})))),
  el("tbody", {}, ...row.attempts.map((a, i) => el("tr", {},
    el("td", {text: String(i + 1)}), el("td", {text: a.started_at}), el("td", {}, el("span", {class: `pill ${a.outcome === "ok" ? "done" : a.outcome}`, text: a.outcome})),
    el("td", {text: a.stage_reached || "—"}), el("td", {text: a.pod_id ? `${a.pod_id} (${a.gpu || "?"})` : "—"}),
    el("td", {text: ((a.pod_seconds || 0) / 60).toFixed(1)}), el("td", {text: money(a.cost_usd)}),
    el("td", {text: a.error || ""})))));
  const json = el("pre", {class: "json"});
  const summary = el("details", {}, el("summary", {text: "run-summary.json"}), json);
  summary.addEventListener("toggle", async () => {
    if (!summary.open || json.textContent) return;
    const response = await fetch(`/api/summary?date=${row.date}`, {credentials: "same-origin"});
    json.textContent = JSON.stringify(await response.json(), null, 2);
  });
  return el("div", {class: "detail"}, el("div", {class: "curve-box"}, lossCurve(row.loss)), evalBox(row.eval),
    el("div", {class: "table-box"}, attempts), summary);
}

function evalBox(judged) {
  if (!judged) return el("p", {class: "muted", text: "No held-out evaluation for this date."});
  const fmt = (v) => (typeof v === "number" ? v.toFixed(4) : "—");
  const head = el("p", {class: `verdict ${judged.verdict || "none"}`,
    text: `Held-out loss: base ${fmt(judged.base_loss)}, previous ${fmt(judged.previous_loss)}` +
      `${judged.previous_date ? ` (${judged.previous_date})` : ""}, today ${fmt(judged.adapter_loss)} — ` +
      `${judged.verdict || "no verdict"}${judged.promoted === false ? " (not promoted)" : ""}. ${judged.why || ""}`});
  const answers = el("table", {class: "answers"}, el("thead", {}, el("tr", {},
    ...["Prompt", "Base model", "Previous adapter", "Today"].map((h) => el("th", {text: h})))),
  el("tbody", {}, ...(judged.answers || []).map((a) => el("tr", {},
    el("td", {text: a.prompt}), el("td", {text: a.base ?? "—"}), el("td", {text: a.previous ?? "—"}),
    el("td", {text: a.today ?? "—"})))));
  return el("div", {class: "eval"}, head, el("div", {class: "table-box"}, answers));
}

function trend(rows) {
  const dated = rows.filter((r) => r.eval && typeof r.eval.adapter_loss === "number").reverse();
  const points = dated.map((r, i) => [i, r.eval.adapter_loss]);
  const base = dated.flatMap((r, i) => (typeof r.eval.base_loss === "number" ? [[i, r.eval.base_loss]] : []));
  const box = $("trend");
  box.replaceChildren(points.length
    ? lossCurve(points, "held-out loss per date", "date", (i) => dated[i].date, base) : "");
  box.dataset.points = String(points.length);
  box.dataset.reference = String(base.length);
}

const openDates = new Set();

async function loadHistory() {
  const response = await fetch("/api/history", {credentials: "same-origin"});
  if (!response.ok) return;
  const rows = await response.json();
  const body = $("history").querySelector("tbody");
  $("history-empty").hidden = rows.length > 0;
  trend(rows);
  body.replaceChildren(...rows.flatMap((r) => {
    const result = r.success ? el("span", {class: "pill done", text: "succeeded"})
      : el("span", {class: "pill failed", text: "failed", title: r.error || ""});
    const main = el("tr", {class: "history-row", "data-date": r.date},
      el("td", {text: r.date}), el("td", {}, result), el("td", {text: String(r.attempts.length)}),
      el("td", {text: r.samples ?? "—"}),
      el("td", {text: r.dropped ? String(r.dropped.total) : "—",
        title: r.dropped ? Object.entries(r.dropped.reasons).map(([k, v]) => `${k}: ${v}`).join(", ") : ""}),
      el("td", {text: typeof r.final_loss === "number" ? r.final_loss.toFixed(4) : "—"}),
      el("td", {class: `eval ${r.eval ? r.eval.verdict || "" : ""}`, text: r.eval && typeof r.eval.adapter_loss === "number"
        ? `${r.eval.adapter_loss.toFixed(4)} ${r.eval.verdict || ""}` : "—"}),
      el("td", {text: r.train_minutes ?? "—"}), el("td", {text: r.pod_minutes ?? "—"}), el("td", {text: money(r.cost_usd)}),
      el("td", {text: r.cost_usd_billed == null ? "—" : money(r.cost_usd_billed)}));
    const more = el("tr", {class: "history-detail", "data-date": r.date}, el("td", {colspan: "11"}, detail(r)));
    more.hidden = !openDates.has(r.date);  // a row someone opened stays open when the history reloads
    main.addEventListener("click", () => {
      more.hidden = !more.hidden;
      if (more.hidden) openDates.delete(r.date); else openDates.add(r.date);
    });
    return [main, more];
  }));
  const first = body.querySelector(".history-detail");
  if (first) first.hidden = false;  // the newest date opens with its curve
}

// ------------------------------------------------------------------ Pods tab

async function loadPods(message = "") {
  $("pods-note").textContent = "Asking the provider…";
  const response = await fetch("/api/pods", {credentials: "same-origin"});
  const data = await response.json();
  const body = $("pods").querySelector("tbody");
  if (!response.ok) { $("pods-note").textContent = data.error; body.replaceChildren(); return; }
  $("pods-note").textContent = message || (data.pods.length ? "" : (data.provider === "local"
    ? "The local provider rents nothing: there are never pods to end." : "No pods of this project are running."));
  body.replaceChildren(...data.pods.map((p) => {
    const button = el("button", {class: "danger", text: "Terminate"});
    button.disabled = !p.stale;
    button.addEventListener("click", async () => {
      if (!confirm(`Terminate pod ${p.pod_id}?`)) return;
      const answer = await post("/api/pods/terminate", {pod_id: p.pod_id});
      loadPods(answer.ok ? `Pod ${p.pod_id} terminated.` : answer.body.error);
    });
    return el("tr", {"data-pod": p.pod_id}, el("td", {text: p.pod_id}), el("td", {text: p.name || ""}),
      el("td", {text: p.status || ""}), el("td", {text: p.uptime_s ? `${(p.uptime_s / 60).toFixed(0)} min` : "—"}),
      el("td", {text: p.stale ? `stale: ${p.why}` : "a live run owns it"}), el("td", {}, button));
  }));
}

$("pods-refresh").addEventListener("click", () => loadPods());

// ------------------------------------------------------------------ tabs

for (const tab of document.querySelectorAll("nav .tab")) {
  tab.addEventListener("click", () => {
    for (const other of document.querySelectorAll("nav .tab")) other.classList.toggle("active", other === tab);
    for (const name of ["run", "history", "pods"]) $(`tab-${name}`).hidden = name !== tab.dataset.tab;
    if (tab.dataset.tab === "history") loadHistory();
    if (tab.dataset.tab === "pods") loadPods();
  });
}

watch($("date").value);
loadSchedule();
