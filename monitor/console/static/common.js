// Shared by every page: the session, the JSON API, the live WebSocket, formatting, the header.
// Plain modern JS (ES modules), no build step, no library.

export const STATES = {
  // Colour-blind safe (Okabe-Ito palette) and never colour alone: an icon and a word too.
  ok: { icon: "\u2714", word: "OK" },
  degraded: { icon: "\u25B2", word: "DEGRADED" },
  failed: { icon: "\u2716", word: "FAILED" },
  offline: { icon: "\u23FB", word: "OFFLINE" },
  unknown: { icon: "?", word: "UNKNOWN" },
};

let sessionInfo = null;

export async function session() {
  if (sessionInfo === null) {
    const response = await fetch("/api/session", { credentials: "same-origin" });
    if (response.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("not logged in");
    }
    sessionInfo = await response.json();
  }
  return sessionInfo;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = (await session()).csrf_token;
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    const error = new Error(data.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// Server time minus browser time, from the live messages: durations and staleness are
// computed against the console's clock, not a skewed desktop clock.
export let clockOffsetS = 0;
export function nowS() { return Date.now() / 1000 + clockOffsetS; }

export function connectLive(onMessage, onState) {
  let delayMs = 500;
  function open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/live`);
    ws.onopen = () => { delayMs = 500; onState && onState(true); };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (typeof message.now_s === "number") clockOffsetS = message.now_s - Date.now() / 1000;
      onMessage(message);
    };
    ws.onclose = async () => {
      onState && onState(false);
      // Closed because the session ended (logged out, console restarted): back to the login.
      const check = await fetch("/api/session", { credentials: "same-origin" }).catch(() => null);
      if (check && check.status === 401) {
        location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
        return;
      }
      setTimeout(open, delayMs);
      delayMs = Math.min(delayMs * 2, 10000);
    };
  }
  open();
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") Object.assign(node.style, value);  // CSSOM: allowed by the CSP
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h >= 24) return `${Math.floor(h / 24)}d ${h % 24}h`;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  return `${m}:${String(r).padStart(2, "0")}`;
}

export function localTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false, year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function channelUrl(site, channel) {
  return `/channel/${encodeURIComponent(site)}/${encodeURIComponent(channel)}`;
}

export function thumbUrl(site, channel, seq) {
  return `/api/channels/${encodeURIComponent(site)}/${encodeURIComponent(channel)}/thumbnail?v=${seq}`;
}

export async function header(active) {
  const me = await session();
  const bar = document.getElementById("topbar");
  const logout = el("button", { class: "link", onclick: async () => {
    await api("/logout", { method: "POST" }).catch(() => {});
    location.href = "/login";
  } }, "Log out");
  bar.replaceChildren(
    el("span", { class: "brand" }, "streamqc"),
    el("nav", {},
      el("a", { href: "/", class: active === "mosaic" ? "active" : null }, "Mosaic"),
      el("a", { href: "/alarms", class: active === "alarms" ? "active" : null }, "Alarms")),
    el("span", { id: "link", class: "link-state", title: "live connection to the console" }, "\u25CF connecting"),
    el("span", { class: "who" }, `${me.user} (${me.role})`),
    logout,
  );
  return me;
}

export function showLink(up) {
  const node = document.getElementById("link");
  if (!node) return;
  node.textContent = up ? "\u25CF live" : "\u25CB reconnecting";
  node.className = "link-state " + (up ? "up" : "down");
}

export function showFlood(flood) {
  const banner = document.getElementById("flood");
  if (!banner) return;
  if (!flood) { banner.hidden = true; return; }
  banner.hidden = false;
  banner.textContent = `\u26A0 Alarm flood: ${flood.alarms} alarms raised in the last ` +
    `${Math.round(flood.window_s / 60)} minutes. Deal with the worst channels first.`;
}

export function toast(message, bad = false) {
  const box = document.getElementById("toast");
  if (!box) return;
  box.textContent = message;
  box.className = bad ? "toast bad" : "toast";
  box.hidden = false;
  clearTimeout(box._timer);
  box._timer = setTimeout(() => { box.hidden = true; }, 5000);
}
