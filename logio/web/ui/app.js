// logio's web viewer: the last records of a subscription, then the live
// stream over server-sent events, resumed from the last id after a drop.
// Log text is only ever inserted as text (textContent), never as HTML.
"use strict";

const FIELDS = ["app", "proc", "host", "log"];
const HISTORY = 200;       // records shown on load
const MAX_LINES = 10000;   // lines the page keeps
const MAX_PENDING = 10000; // lines kept while paused

const $ = (id) => document.getElementById(id);
const view = $("log");
const form = $("filters");
const state = $("state");

let source = null;
let paused = false;
let follow = true;
let utc = localStorage.getItem("logio.zone") !== "local";
let highlight = null;
let queue = [];        // records waiting for the next animation frame
let pending = [];      // records that came while paused
let pendingDropped = 0;
let scheduled = false;
let total = 0;
let recent = 0;

function query() {
  return new URLSearchParams(location.search);
}

function readFilters() {
  const params = query();
  for (const name of FIELDS) form.elements[name].value = params.get(name) || "";
}

function subscription(extra) {
  const params = new URLSearchParams();
  const own = query();
  for (const name of FIELDS) {
    const value = own.get(name);
    if (value) params.set(name, value);
  }
  if (own.get("token")) params.set("token", own.get("token"));
  for (const [name, value] of Object.entries(extra)) params.set(name, value);
  return "/?" + params.toString();
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function setState(text, kind) {
  state.textContent = text;
  state.className = "state " + (kind || "");
}

// Colours: one stable hue per app[proc].
const hues = new Map();
function hue(key) {
  let h = hues.get(key);
  if (h === undefined) {
    h = 0;
    for (let i = 0; i < key.length; i++) h = (h * 31 + key.charCodeAt(i)) >>> 0;
    h = Math.round((h % 1000) * 137.508) % 360;  // golden-angle steps spread nearby hashes
    hues.set(key, h);
  }
  return h;
}

function formatTime(iso) {
  if (utc) return iso.slice(0, 23).replace("T", " ");
  const when = new Date(iso);
  if (isNaN(when)) return iso;
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())} ` +
    `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}.` +
    pad(when.getMilliseconds(), 3);
}

function span(cls, text) {
  const node = document.createElement("span");
  node.className = cls;
  node.textContent = text;
  return node;
}

// What the text output shows escaped, so a line cannot reorder or hide the
// text around it: C0 controls but tab and newline, DEL and C1 controls, the
// Arabic letter mark, LRM and RLM, the line and paragraph separators, bidi
// embeddings, overrides and isolates.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

function visible(text) {
  return text.replace(UNSAFE, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

// The browser's regular expressions backtrack (a pattern like (a+)+$ takes
// exponential time on some lines), so only patterns that are literal text, or
// alternatives of literal text, with an optional (?i), are highlighted, as an
// escaped alternation that cannot backtrack; others are matched by the server
// but not highlighted.
function literalHighlight(pattern) {
  let flags = "g";
  if (pattern.startsWith("(?i)")) {
    flags += "i";
    pattern = pattern.slice(4);
  }
  const literals = [];
  let text = "";
  for (let i = 0; i <= pattern.length; i++) {
    const c = pattern[i];
    if (c === undefined || c === "|") {
      if (!text) return null;
      literals.push(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
      text = "";
    } else if (c === "\\") {
      const next = pattern[i + 1];
      if (next === undefined || /[A-Za-z0-9]/.test(next)) return null;
      text += next;
      i++;
    } else if ("^$.*+?()[]{}".includes(c)) {
      return null;
    } else {
      text += c;
    }
  }
  return new RegExp(literals.join("|"), flags);
}

function textWithMarks(raw) {
  const node = document.createElement("span");
  node.className = "text";
  const text = visible(raw);
  if (!highlight) {
    node.textContent = text;
    return node;
  }
  highlight.lastIndex = 0;
  let last = 0;
  let match;
  while ((match = highlight.exec(text)) !== null) {
    if (match[0] === "") { highlight.lastIndex++; continue; }
    node.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    node.append(mark);
    last = match.index + match[0].length;
  }
  node.append(text.slice(last));
  return node;
}

function render(record) {
  const line = document.createElement("div");
  line.className = "line";
  if (record.notice !== undefined) {
    line.classList.add("notice");
    line.append(span("ts", formatTime(record.time)), span("text", visible(record.notice)));
  } else {
    const topic = `${record.app}[${record.proc}]`;
    const label = span("topic", topic);
    label.style.color = `hsl(${hue(topic)} 65% var(--hue-l))`;
    line.append(span("ts", formatTime(record.time)), label, span("host", record.host + ":"),
      textWithMarks(record.log));
  }
  line.dataset.time = record.time;
  return line;
}

function flush() {
  scheduled = false;
  if (!queue.length) return;
  const batch = queue.length > MAX_LINES ? queue.slice(-MAX_LINES) : queue;
  queue = [];
  const fragment = document.createDocumentFragment();
  for (const record of batch) fragment.append(render(record));
  view.append(fragment);
  let extra = view.childElementCount - MAX_LINES;
  while (extra-- > 0) view.firstElementChild.remove();
  if (follow) view.scrollTop = view.scrollHeight;
}

function add(record) {
  total++;
  recent++;
  if (paused) {
    pending.push(record);
    if (pending.length > MAX_PENDING) { pending.shift(); pendingDropped++; }
    showPending();
    return;
  }
  queue.push(record);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

function showPending() {
  const n = pending.length + pendingDropped;
  $("pending").textContent = paused && n ? `${n.toLocaleString()} new` +
    (pendingDropped ? ` (${pendingDropped.toLocaleString()} not kept)` : "") : "";
}

function countLines() {
  $("count").textContent = `${total.toLocaleString()} lines`;
  view.dataset.total = String(total);
}

setInterval(() => {
  $("rate").textContent = `${recent.toLocaleString()} lines/s`;
  recent = 0;
  countLines();
}, 1000);

async function connect() {
  if (source) source.close();
  showError("");
  const params = query();
  const log = params.get("log");
  highlight = null;
  if (log) {
    try { highlight = literalHighlight(log); } catch (e) { highlight = null; }
  }
  setState("connecting…", "connecting");
  // Ask once without following, so a refused subscription (a bad regex, a
  // missing token) shows the server's own message.
  try {
    const check = await fetch(subscription({ follow: "0", format: "json" }));
    if (!check.ok) {
      showError(`${check.status} ${check.statusText}: ${(await check.text()).trim()}`);
      setState("refused", "error");
      return;
    }
  } catch (e) {
    showError("cannot reach the server: " + e);
    setState("offline", "error");
  }
  source = new EventSource(subscription({ format: "sse", tail: String(HISTORY) }));
  source.onopen = () => setState(paused ? "paused" : "live", paused ? "paused" : "");
  source.onerror = () => {
    // EventSource reconnects by itself, sending the last id it saw, and
    // the server resumes after it.
    if (source.readyState === EventSource.CONNECTING) setState("reconnecting…", "connecting");
    else setState("disconnected", "error");
  };
  source.onmessage = (event) => add(JSON.parse(event.data));
  const notice = (event) => add(JSON.parse(event.data));
  source.addEventListener("dropped", notice);
  source.addEventListener("notice", notice);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = query();
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value); else params.delete(name);
  }
  history.pushState(null, "", "?" + params.toString());
  view.replaceChildren();
  queue = [];
  connect();
});

window.addEventListener("popstate", () => { readFilters(); view.replaceChildren(); connect(); });

function setPaused(on) {
  paused = on;
  $("pause").textContent = on ? "Resume" : "Pause";
  $("pause").classList.toggle("on", on);
  if (!on) {
    const kept = pending;
    pending = [];
    pendingDropped = 0;
    for (const record of kept) queue.push(record);
    if (kept.length) flush();
  }
  showPending();
  if (source && source.readyState === EventSource.OPEN) setState(on ? "paused" : "live", on ? "paused" : "");
}

$("pause").addEventListener("click", () => setPaused(!paused));
document.addEventListener("keydown", (event) => {
  if (event.key === " " && event.target === document.body) {
    event.preventDefault();
    setPaused(!paused);
  }
});

function showZone() {
  $("zone").textContent = utc ? "UTC" : "Local";
  for (const line of view.children) {
    const ts = line.querySelector(".ts");
    if (ts) ts.textContent = formatTime(line.dataset.time);
  }
}
$("zone").addEventListener("click", () => {
  utc = !utc;
  localStorage.setItem("logio.zone", utc ? "utc" : "local");
  showZone();
});

$("clear").addEventListener("click", () => { view.replaceChildren(); });

view.addEventListener("scroll", () => {
  const atBottom = view.scrollHeight - view.scrollTop - view.clientHeight < 4;
  follow = atBottom;
  $("live").hidden = atBottom;
});
$("live").addEventListener("click", () => {
  follow = true;
  view.scrollTop = view.scrollHeight;
  $("live").hidden = true;
});

readFilters();
showZone();
connect();
