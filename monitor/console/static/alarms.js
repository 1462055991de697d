// The alarm list: active alarms first, then the history kept by the console, with filters;
// each row opens its detail (onset picture with the region outlined, every detail field).
import {
  api, channelUrl, connectLive, duration, el, header, localTime, nowS, showFlood, showLink, toast,
} from "./common.js";

const form = document.getElementById("filters");
let me = null;
let refreshTimer = null;

function query(active) {
  const params = new URLSearchParams({ active: active ? "1" : "0" });
  const data = new FormData(form);
  for (const name of ["site", "channel", "alarm", "severity"]) {
    const value = String(data.get(name) || "").trim();
    if (value) params.set(name, value);
  }
  for (const name of ["since", "until"]) {
    const value = String(data.get(name) || "");
    if (value) params.set(name, String(new Date(value).getTime() / 1000));
  }
  if (active) params.set("shelved", "1");
  return params.toString();
}

function ackCell(a) {
  if (a.acked_by) return el("td", { class: "acked" }, `\u2713 ${a.acked_by} ${localTime(a.acked_at)}`);
  return el("td", { class: "unacked" }, "not yet");
}

function ackButton(a) {
  if (a.acked_by || !me || me.role !== "operator") return el("td");
  return el("td", {}, el("button", { class: "ack", onclick: async (event) => {
    event.stopPropagation();
    try {
      await api(`/api/alarms/${a.id}/ack`, { method: "POST" });
      toast(`${a.alarm} on ${a.channel} acknowledged`);
      refresh();
    } catch (error) { toast(error.message, true); }
  } }, "Acknowledge"));
}

function channelLink(a) {
  return el("a", { href: channelUrl(a.site, a.channel), onclick: (e) => e.stopPropagation() }, a.channel);
}

async function refresh() {
  const [active, history] = await Promise.all([
    api(`/api/alarms?${query(true)}`), api(`/api/alarms?${query(false)}&limit=500`),
  ]);
  showFlood(active.flood);
  const shown = active.alarms.filter((a) => !a.shelved);
  const shelved = active.alarms.length - shown.length;
  document.getElementById("active-count").textContent = `(${shown.length})`;
  const note = document.getElementById("shelved-note");
  note.hidden = shelved === 0;
  note.textContent = `${shelved} more alarm(s) on shelved channels are recorded but not shown as active.`;
  document.querySelector("#active tbody").replaceChildren(...shown.map((a) => el("tr",
    { class: `sev-${a.severity}`, "data-id": a.id, onclick: () => openDetail(a.id) },
    el("td", {}, localTime(a.raised_at)),
    el("td", { class: "lasted", "data-since": a.since_s }, duration(nowS() - a.since_s)),
    el("td", {}, a.site), el("td", {}, channelLink(a)), el("td", {}, a.input),
    el("td", { class: "what" }, a.alarm), el("td", { class: "sev" }, a.severity),
    ackCell(a), ackButton(a))));
  if (!shown.length) {
    document.querySelector("#active tbody").replaceChildren(
      el("tr", {}, el("td", { colspan: 9, class: "none" }, "\u2714 No active alarm")));
  }
  document.querySelector("#history tbody").replaceChildren(...history.alarms.map((a) => el("tr",
    { class: `sev-${a.severity}`, "data-id": a.id, onclick: () => openDetail(a.id) },
    el("td", {}, localTime(a.raised_at)), el("td", {}, localTime(a.cleared_at)),
    el("td", {}, duration(a.duration_s)), el("td", {}, a.site), el("td", {}, channelLink(a)),
    el("td", {}, a.input), el("td", { class: "what" }, a.alarm), el("td", { class: "sev" }, a.severity),
    ackCell(a))));
}

async function openDetail(id) {
  const a = await api(`/api/alarms/${id}`);
  const dialog = document.getElementById("detail");
  const picture = el("div", { class: "onset" });
  if (a.has_picture) {
    picture.append(el("img", { src: `/api/alarms/${a.id}/picture`, alt: `picture at the onset of ${a.alarm}` }));
    const roi = a.detail && a.detail.roi;
    if (Array.isArray(roi) && roi.length === 4) {
      const [x, y, w, h] = roi.map((v) => `${(100 * v).toFixed(2)}%`);
      picture.append(el("div", { class: "roi", style: { left: x, top: y, width: w, height: h } }));
    }
  } else {
    picture.append(el("p", { class: "note" }, "No picture with this alarm."));
  }
  const rows = [
    ["Site / channel", `${a.site} / ${a.channel}`], ["Input", a.input + (a.rendition ? ` (${a.rendition})` : "")],
    ["Severity", a.severity], ["Raised", localTime(a.raised_at)],
    ["Cleared", a.cleared_at ? localTime(a.cleared_at) : "still active"],
    ["Duration", a.cleared_at ? duration(a.duration_s) : duration(nowS() - a.since_s) + " so far"],
    ["Media time", `${a.start ?? "?"} s \u2192 ${a.end ?? "\u2026"} s`],
    ["Acknowledged", a.acked_by ? `${a.acked_by} at ${localTime(a.acked_at)}` : "not yet"],
  ];
  for (const [k, v] of Object.entries(a.detail || {})) rows.push([`detail.${k}`, JSON.stringify(v)]);
  for (const [k, v] of Object.entries(a.cleared_detail || {})) rows.push([`cleared.${k}`, JSON.stringify(v)]);
  dialog.replaceChildren(
    el("h2", {}, `${a.alarm} on ${a.channel}`), picture,
    el("table", { class: "kv" }, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
    el("form", { method: "dialog" }, el("button", {}, "Close")));
  dialog.showModal();
}

form.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
me = await header("alarms");
await refresh();
connectLive((message) => {
  if (message.type === "snapshot" || message.alarms) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 300);  // coalesce bursts of alarm changes
  }
  if ("flood" in message) showFlood(message.flood);
}, showLink);
setInterval(() => {
  for (const cell of document.querySelectorAll("#active td.lasted")) {
    cell.textContent = duration(nowS() - Number(cell.dataset.since));
  }
}, 1000);
