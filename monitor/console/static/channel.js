// A channel page: inputs, the last 24 h as a timeline per input, the failover block.
import {
  STATES, api, connectLive, duration, el, header, localTime, nowS, showFlood, showLink, thumbUrl, toast,
} from "./common.js";

const [, , site, channel] = location.pathname.split("/").map(decodeURIComponent);
const base = `/api/channels/${encodeURIComponent(site)}/${encodeURIComponent(channel)}`;
let me = null;
let data = null;
let reloadTimer = null;
const SEVERITY_COLOUR = { critical: "#D55E00", major: "#E69F00", minor: "#F0E442", warning: "#F0E442", info: "#56B4E9" };

async function load() {
  try {
    data = await api(base);
  } catch (error) {
    document.getElementById("title").textContent = `${site} / ${channel}: ${error.message}`;
    return;
  }
  render();
}

function render() {
  const s = STATES[data.state] || STATES.unknown;
  const band = document.getElementById("band");
  band.className = `band big state-${data.shelved ? "shelved" : data.state}`;
  band.replaceChildren(el("span", { class: "icon" }, data.shelved ? "\u23F8" : s.icon),
    el("span", { class: "word" }, data.shelved ? "SHELVED" : s.word),
    el("span", { class: "name" }, channel));
  document.title = `streamqc: ${channel} (${s.word})`;
  document.getElementById("title").textContent = `${site} / ${channel}`;
  document.getElementById("onair").textContent = `On air: ${data.active_input || "unknown"}`;
  if (data.thumbnail_seq) document.getElementById("picture").src = thumbUrl(site, channel, data.thumbnail_seq);
  const byInput = {};
  for (const a of data.alarms) (byInput[a.input] ||= []).push(a);
  // "failover" is the daemon's name for the failover policy's own alarms, not a feed: shown
  // only when it has some.
  const inputs = Object.keys(data.inputs).filter((n) => n !== "failover" || byInput[n]);
  document.querySelector("#inputs tbody").replaceChildren(...inputs.map((name) => el("tr",
    { class: `state-${data.inputs[name]}` },
    el("th", {}, name === "failover" ? "failover policy" : name + (name === data.active_input ? " (on air)" : "")),
    el("td", {}, `${(STATES[data.inputs[name]] || STATES.unknown).icon} ${data.inputs[name]}`),
    el("td", {}, (byInput[name] || []).map((a) => `${a.alarm} (${a.severity}, ${duration(nowS() - a.since_s)})`).join(", ") || "none"))));
  renderShelf();
  drawTimeline(inputs.filter((n) => n !== "failover" || data.timeline.some((a) => a.input === n)));
  renderFailover();
  document.querySelector("#audit tbody").replaceChildren(...data.audit.map((a) => el("tr", {},
    el("td", {}, localTime(a.at)), el("td", {}, a.decision), el("td", {}, a.why || ""),
    el("td", {}, a.operator || ""))));
  if (!data.audit.length) {
    document.querySelector("#audit tbody").replaceChildren(
      el("tr", {}, el("td", { colspan: 4, class: "note" }, "No failover decision recorded yet.")));
  }
}

function operator() { return me && me.role === "operator"; }

async function act(path, body, done) {
  try {
    await api(`${base}/${path}`, { method: "POST", body });
    toast(done);
  } catch (error) { toast(error.message, true); }
  await load();
}

function renderShelf() {
  const box = document.getElementById("shelf");
  if (data.shelved) {
    box.replaceChildren(el("p", {}, `\u23F8 Shelved by ${data.shelved.by} until ${localTime(data.shelved.until)}: ${data.shelved.reason}`),
      operator() ? el("button", { onclick: () => act("unshelve", {}, "unshelved") }, "Unshelve") : null);
    return;
  }
  if (!operator()) { box.replaceChildren(); return; }
  const hours = el("select", { id: "shelve-for" },
    ...[["15 min", 900], ["1 hour", 3600], ["4 hours", 14400], ["12 hours", 43200]].map(([t, v]) => el("option", { value: v }, t)));
  const reason = el("input", { id: "shelve-reason", placeholder: "reason (maintenance)", size: 24 });
  box.replaceChildren(el("label", {}, "Shelve for ", hours), " ", reason, " ",
    el("button", { onclick: () => act("shelve", { duration_s: Number(hours.value), reason: reason.value || "maintenance" }, "shelved") }, "Shelve"));
}

function renderFailover() {
  const body = document.getElementById("failover-body");
  const f = data.failover;
  const inputs = Object.keys(data.inputs).filter((n) => n !== "failover");
  const rows = [];
  if (!f) {
    rows.push(el("p", { class: "note" }, "No failover agent reports this channel."));
  } else {
    rows.push(el("p", { class: "onair big", id: "failover-onair" },
      `On air (agent): ${f.active_input || "unknown"}`,
      f.online === false ? el("span", { class: "bad" }, " \u2022 agent OFFLINE") : null,
      f.since ? el("span", { class: "note" }, ` since ${localTime(f.since)}`) : null));
  }
  const request = f && f.request;
  if (request) {
    const expiry = el("span", { class: "countdown", id: "countdown", "data-expires": request.expires_at || "" });
    rows.push(el("div", { class: "request", role: "alert" },
      el("p", {}, el("strong", {}, "\u26A0 The daemon asks to switch to "), el("strong", { class: "to" }, request.to),
        ` because of ${(request.reason || []).join(", ")}. `, expiry),
      el("button", { class: "confirm", disabled: !operator(), onclick: () => act("failover", { action: "confirm", request_id: request.request_id }, `switch to ${request.to} confirmed`) }, `Confirm switch to ${request.to}`),
      el("button", { class: "reject", disabled: !operator(), onclick: () => act("failover", { action: "reject", request_id: request.request_id }, "request rejected") }, "Reject")));
  }
  const onAir = (f && f.active_input) || data.active_input;
  const switches = inputs.map((name) => el("button", {
    class: "switch", disabled: !operator() || name === onAir, "data-to": name,
    title: name === onAir ? `${name} is on air` : null,
    onclick: () => { if (confirm(`Put ${name} on air for ${channel}?`)) act("failover", { action: "switch", to: name }, `switch to ${name} sent`); },
  }, `Switch to ${name}`));
  rows.push(el("div", { class: "buttons" }, ...switches,
    el("button", { disabled: !operator(), onclick: () => act("failover", { action: "lock" }, "automatic switching locked") }, "Lock"),
    el("button", { disabled: !operator(), onclick: () => act("failover", { action: "unlock" }, "automatic switching unlocked") }, "Unlock")));
  if (!operator()) rows.push(el("p", { class: "note" }, "Viewers see; only operators act."));
  body.replaceChildren(...rows);
  countdown();
}

function countdown() {
  const node = document.getElementById("countdown");
  if (!node) return;
  if (!node.dataset.expires) { node.textContent = "It waits for an answer."; return; }
  const left = new Date(node.dataset.expires).getTime() / 1000 - nowS();
  node.textContent = left > 0 ? `The daemon switches by itself in ${duration(left)}.` : "Expired.";
}

function drawTimeline(inputs) {
  const canvas = document.getElementById("timeline");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 900;
  const rowH = 28, top = 8, left = 90, axis = 22;
  const rows = [...new Set([...inputs, ...data.timeline.map((a) => a.input)])];
  const height = top + rows.length * rowH + axis;
  canvas.width = width * ratio; canvas.height = height * ratio; canvas.style.height = `${height}px`;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.fillStyle = "#15181c"; g.fillRect(0, 0, width, height);
  const span = Number(document.getElementById("range").value);
  const end = data.now_s, start = end - span;
  const x = (t) => left + (Math.max(start, Math.min(end, t)) - start) / span * (width - left - 10);
  g.font = "13px system-ui, sans-serif"; g.textBaseline = "middle";
  rows.forEach((name, i) => {
    const y = top + i * rowH;
    g.fillStyle = "#1f242a"; g.fillRect(left, y + 3, width - left - 10, rowH - 6);
    g.fillStyle = "#e8e8e8"; g.fillText(name, 6, y + rowH / 2);
  });
  for (const a of data.timeline) {
    const i = rows.indexOf(a.input);
    const y = top + i * rowH;
    const x0 = x(a.since_s), x1 = Math.max(x0 + 2, x(a.cleared_s ?? end));
    g.fillStyle = SEVERITY_COLOUR[a.severity] || "#CC79A7";
    g.fillRect(x0, y + 5, x1 - x0, rowH - 10);
  }
  g.fillStyle = "#aaa"; g.textBaseline = "top";
  for (let i = 0; i <= 8; i += 1) {
    const t = start + i * span / 8;
    const px = x(t);
    g.fillRect(px, top + rows.length * rowH, 1, 4);
    const label = i === 8 ? "now" : new Date(t * 1000).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
    g.fillText(label, Math.min(px - 14, width - 34), top + rows.length * rowH + 6);
  }
}

me = await header("channel");
await load();
connectLive((message) => {
  if ("flood" in message) showFlood(message.flood);
  const mine = (pair) => pair[0] === site && pair[1] === channel;
  const changed = message.type === "snapshot" ||
    (message.channels || []).some((c) => c.site === site && c.channel === channel) ||
    (message.audit || []).some(mine);
  if (changed) {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 200);
  }
}, showLink);
setInterval(countdown, 1000);
const redraw = () => data && drawTimeline(Object.keys(data.inputs).filter((n) => n !== "failover"));
window.addEventListener("resize", redraw);
document.getElementById("range").addEventListener("input", redraw);
