// The mosaic: one tile per channel, grouped by site, patched in place as updates arrive.
//
// Fluid at 1,000 channels: live messages are queued and applied once per animation frame
// (coalesced); a tile's DOM is touched only where its data changed; thumbnails load only for
// tiles on screen (IntersectionObserver) and reload only when a newer one exists; filters and
// "worst first" use the hidden attribute and CSS order, never a re-render.
import {
  STATES, channelUrl, connectLive, duration, el, header, nowS, showFlood, showLink, thumbUrl,
} from "./common.js";

const tiles = new Map();    // "site/channel" -> {node, parts, data, shownSeq, visible}
const sites = new Map();    // site -> {section, grid, title}
const pending = [];
let frameRequested = false;
const SEVERITY_RANK = { critical: 3, major: 2, minor: 1, warning: 1, info: 0 };
const STATE_RANK = { failed: 4, offline: 3, degraded: 2, unknown: 1, ok: 0 };

// Measured by benchmarks/test_console_load.py: the script time to apply one batch of updates
// (batchMs), and the same plus the style, layout and paint it caused (frameMs: until a message
// posted from the frame's callback runs, which is after that frame's rendering).
window.__streamqc = { batchMs: [], frameMs: [], applied: 0 };
const afterPaint = new MessageChannel();
let frameStarted = 0;
afterPaint.port1.onmessage = () => {
  const stats = window.__streamqc;
  stats.frameMs.push(performance.now() - frameStarted);
  if (stats.frameMs.length > 5000) stats.frameMs.splice(0, 1000);
};

const observer = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const tile = tiles.get(entry.target.dataset.key);
    if (!tile) continue;
    tile.visible = entry.isIntersecting;
    if (tile.visible) refreshThumb(tile);
  }
}, { rootMargin: "200px" });

function key(data) { return `${data.site}/${data.channel}`; }

function siteGroup(site) {
  let group = sites.get(site);
  if (group) return group;
  const title = el("h2", {}, site);
  const grid = el("div", { class: "grid" });
  const section = el("section", { class: "site", "data-site": site }, title, grid);
  const main = document.getElementById("mosaic");
  const after = [...sites.keys()].sort().find((name) => name > site);
  main.insertBefore(section, after ? sites.get(after).section : null);
  group = { section, grid, title };
  sites.set(site, group);
  const select = document.getElementById("f-site");
  select.append(el("option", { value: site }, site));
  return group;
}

function makeTile(data) {
  const parts = {
    band: el("div", { class: "band" }),
    icon: el("span", { class: "icon", "aria-hidden": "true" }),
    word: el("span", { class: "word" }),
    name: el("span", { class: "name" }, data.channel),
    img: el("img", { alt: `${data.channel} picture`, loading: "lazy", decoding: "async" }),
    stale: el("span", { class: "stale", hidden: true }, "STALE PICTURE"),
    asking: el("span", { class: "asking", hidden: true }, "\u26A0 CONFIRM FAILOVER?"),
    shelf: el("span", { class: "shelf", hidden: true }),
    onair: el("div", { class: "onair" }),
    alarms: el("ul", { class: "alarms" }),
  };
  parts.band.append(parts.icon, parts.word, parts.name);
  const picture = el("div", { class: "picture" }, parts.img, parts.stale, parts.shelf, parts.asking);
  const node = el("a", { class: "tile", href: channelUrl(data.site, data.channel),
    "data-key": key(data), "data-site": data.site, "data-channel": data.channel },
    parts.band, picture, parts.onair, parts.alarms);
  const tile = { node, parts, data: null, shownSeq: -1, visible: false, alarmKey: "" };
  tiles.set(key(data), tile);
  siteGroup(data.site).grid.append(node);
  observer.observe(node);
  return tile;
}

function refreshThumb(tile) {
  const data = tile.data;
  if (!data || !tile.visible || data.thumbnail_seq === 0 || data.thumbnail_seq === tile.shownSeq) return;
  tile.shownSeq = data.thumbnail_seq;
  tile.parts.img.src = thumbUrl(data.site, data.channel, data.thumbnail_seq);
}

function stale(data) {
  if (data.thumbnail_at_s === null) return true;
  return nowS() - data.thumbnail_at_s > data.thumbnail_stale_after_s;
}

function patch(tile, data) {
  const old = tile.data || {};
  const p = tile.parts;
  const shownState = data.shelved ? "shelved" : data.state;
  if (old.state !== data.state || Boolean(old.shelved) !== Boolean(data.shelved)) {
    const s = STATES[data.state] || STATES.unknown;
    tile.node.dataset.state = data.state;
    tile.node.className = `tile state-${shownState}`;
    p.icon.textContent = data.shelved ? "\u23F8" : s.icon;
    p.word.textContent = data.shelved ? "SHELVED" : s.word;
  }
  if (JSON.stringify(old.shelved) !== JSON.stringify(data.shelved)) {
    p.shelf.hidden = !data.shelved;
    if (data.shelved) {
      p.shelf.textContent = `shelved by ${data.shelved.by} until ` +
        new Date(data.shelved.until).toLocaleTimeString(undefined, { hour12: false });
    }
  }
  let onAir = data.active_input ? `on air: ${data.active_input}` : "on air: ?";
  // Compliance at a glance: an ad break in progress, captions carried or not (when checked).
  if (data.in_break) onAir += " \u00B7 AD BREAK";
  if (data.captions) onAir += data.captions.on_air ? " \u00B7 CC" : " \u00B7 NO CC";
  const caption = data.captions && data.captions.last_line ? `captions: ${data.captions.last_line}` : "";
  if (p.onair.title !== caption) p.onair.title = caption;
  if (p.onair.textContent !== onAir) {
    p.onair.textContent = onAir;
    // Running on anything but primary is worth a glance: the channel has lost its redundancy.
    p.onair.classList.toggle("not-primary", Boolean(data.active_input) && data.active_input !== "primary");
  }
  const asking = Boolean(data.failover && data.failover.request);
  if (p.asking.hidden === asking) p.asking.hidden = !asking;
  const alarmKey = data.alarms.map((a) => `${a.id}:${a.acked_by || ""}`).join(",");
  if (alarmKey !== tile.alarmKey) {
    tile.alarmKey = alarmKey;
    // A tile has room for three alarms; the channel page lists them all.
    const shown = data.alarms.length > 3 ? data.alarms.slice(0, 2) : data.alarms;
    const more = data.alarms.length - shown.length;
    p.alarms.replaceChildren(...shown.map((a) => el("li",
      { class: `sev-${a.severity}`, "data-alarm": a.alarm, "data-since": a.since_s },
      el("span", { class: "what" }, `${a.alarm}`),
      el("span", { class: "sev" }, a.severity),
      el("span", { class: "input" }, a.input),
      el("span", { class: "lasted" }, duration(nowS() - a.since_s)),
      a.acked_by ? el("span", { class: "acked", title: `acknowledged by ${a.acked_by}` }, "\u2713 ack") : null)),
      ...(more ? [el("li", { class: "more" }, `+ ${more} more alarms`)] : []));
  }
  tile.data = data;
  tile.search = `${data.site} ${data.channel} ${data.active_input || ""} ` +
    data.alarms.map((a) => `${a.alarm} ${a.input} ${a.severity}`).join(" ");
  const worst = Math.max(-1, ...data.alarms.map((a) => SEVERITY_RANK[a.severity] ?? 1));
  tile.rank = (STATE_RANK[data.state] ?? 1) * 10 + worst + 1;
  p.stale.hidden = !stale(data);
  refreshThumb(tile);
}

function apply(message) {
  if (message.type === "snapshot") {
    const seen = new Set();
    for (const data of message.channels) {
      seen.add(key(data));
      patch(tiles.get(key(data)) || makeTile(data), data);
    }
    for (const [k, tile] of tiles) if (!seen.has(k)) remove(k, tile);
  } else {
    for (const data of message.channels) patch(tiles.get(key(data)) || makeTile(data), data);
    for (const [site, channel] of message.removed) {
      const k = `${site}/${channel}`;
      if (tiles.has(k)) remove(k, tiles.get(k));
    }
  }
  if ("flood" in message) showFlood(message.flood);
}

function remove(k, tile) {
  observer.unobserve(tile.node);
  tile.node.remove();
  tiles.delete(k);
}

function onMessage(message) {
  pending.push(message);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(flush);
  }
}

function flush() {
  frameRequested = false;
  const started = performance.now();
  const batch = pending.splice(0);
  for (const message of batch) apply(message);
  filter();
  const took = performance.now() - started;
  const stats = window.__streamqc;
  stats.batchMs.push(took);
  if (stats.batchMs.length > 5000) stats.batchMs.splice(0, 1000);
  stats.applied += batch.length;
  frameStarted = started;
  afterPaint.port2.postMessage(null);
}

function filter() {
  const site = document.getElementById("f-site").value;
  const state = document.getElementById("f-state").value;
  const text = document.getElementById("f-text").value.trim().toLowerCase();
  const worst = document.getElementById("f-worst").checked;
  const counts = { ok: 0, degraded: 0, failed: 0, offline: 0, unknown: 0 };
  for (const tile of tiles.values()) {
    const d = tile.data;
    counts[d.state] = (counts[d.state] || 0) + 1;
    const show = (!site || d.site === site) &&
      (!state || d.state === state || (state === "problem" && d.state !== "ok")) &&
      (!text || tile.search.toLowerCase().includes(text));
    if (tile.node.hidden === show) tile.node.hidden = !show;
    const order = worst ? String(100 - tile.rank) : "";
    if (tile.node.style.order !== order) tile.node.style.order = order;
  }
  for (const [name, group] of sites) {
    group.section.hidden = Boolean(site && site !== name);
  }
  const total = tiles.size;
  document.getElementById("counts").textContent =
    `${total} channels: ${counts.failed} failed, ${counts.degraded} degraded, ` +
    `${counts.offline} offline, ${counts.ok} ok`;
}

function tick() {
  // Once a second: how long each alarm has lasted, and which pictures went stale.
  for (const tile of tiles.values()) {
    if (!tile.visible || !tile.data) continue;
    for (const li of tile.parts.alarms.querySelectorAll("li[data-since]")) {
      li.querySelector(".lasted").textContent = duration(nowS() - Number(li.dataset.since));
    }
    const isStale = stale(tile.data);
    if (tile.parts.stale.hidden === isStale) tile.parts.stale.hidden = !isStale;
  }
}

for (const id of ["f-site", "f-state", "f-text", "f-worst"]) {
  document.getElementById(id).addEventListener("input", filter);
}
await header("mosaic");
connectLive(onMessage, showLink);
setInterval(tick, 1000);
