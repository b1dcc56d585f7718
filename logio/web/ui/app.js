// logio's web viewer: the last records of a subscription, then the live
// stream over server-sent events, resumed from the last id after a drop.
// Log text is only ever inserted as text (textContent), never as HTML.
import { literalHighlight, logText, visible } from "./text.js";
import { colourOf, topicsPanel } from "./topics.js";

const FIELDS = ["app", "proc", "host", "log", "level"];
const LEVELS = ["trace", "debug", "info", "notice", "warn", "error", "fatal"];
const HISTORY = 200;       // records shown on load
const MAX_LINES = 10000;   // lines the page keeps
const MAX_PENDING = 10000; // lines kept while paused
const NARROW = 900;        // px below which the topics panel covers the lines

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
let total = 0;         // records received since the filters were set
let recent = 0;
let connects = 0;      // so only the latest of overlapping connects opens a stream

function query() {
  return new URLSearchParams(location.search);
}

function readFilters() {
  const params = query();
  for (const name of FIELDS) form.elements[name].value = params.get(name) || "";
  // A level the server knows by another name (warning, err, 40) keeps its
  // own choice in the selector.
  const level = form.elements.level;
  const wanted = params.get("level");
  if (wanted && level.value !== wanted) {
    level.append(new Option(wanted + " and worse", wanted));
    level.value = wanted;
  }
}

function withToken(params) {
  const token = query().get("token");
  if (token) params.set("token", token);
  return params;
}

function subscription(extra) {
  const params = new URLSearchParams();
  const own = query();
  for (const name of FIELDS) {
    const value = own.get(name);
    if (value) params.set(name, value);
  }
  withToken(params);
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

// A record's time as [date, time of day], in UTC or local time.
function formatTime(iso) {
  if (utc) return [iso.slice(0, 10), iso.slice(11, 23)];
  const when = new Date(iso);
  if (isNaN(when)) return ["", iso];
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return [`${when.getFullYear()}-${pad(when.getMonth() + 1)}-${pad(when.getDate())}`,
    `${pad(when.getHours())}:${pad(when.getMinutes())}:${pad(when.getSeconds())}.` +
    pad(when.getMilliseconds(), 3)];
}

function span(cls, text) {
  const node = document.createElement("span");
  node.className = cls;
  node.textContent = text;
  return node;
}

function timestamp(iso) {
  const [date, time] = formatTime(iso);
  const node = span("ts", "");
  node.append(span("date", date + " "), time);
  return node;
}

function render(record) {
  const line = document.createElement("div");
  line.className = "line";
  if (record.notice !== undefined) {
    line.classList.add("notice");
    line.append(timestamp(record.time), span("text", visible(record.notice)));
  } else {
    const label = span("topic", `${record.app}[${record.proc}]`);
    label.style.color = colourOf(record.app);
    line.append(timestamp(record.time), label, span("host", record.host + ":"),
      logText(record.log, highlight));
    if (LEVELS.includes(record.level)) {
      line.classList.add("lvl-" + record.level);
      line.dataset.level = record.level;
    }
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
  countLines();
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
  $("count").textContent = `${total.toLocaleString()} ${total === 1 ? "line" : "lines"}`;
  view.dataset.total = String(total);
}

setInterval(() => {
  $("rate").textContent = `${recent.toLocaleString()} lines/s`;
  recent = 0;
  countLines();
}, 1000);

// Forget what the page shows, for new filters or at the user's word.
function reset() {
  view.replaceChildren();
  queue = [];
  pending = [];
  pendingDropped = 0;
  total = 0;
  showPending();
  countLines();
}

async function connect() {
  const attempt = ++connects;
  if (source) source.close();
  source = null;
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
    if (attempt !== connects) return;
    if (!check.ok) {
      showError(`${check.status} ${check.statusText}: ${(await check.text()).trim()}`);
      setState("refused", "error");
      return;
    }
  } catch (e) {
    if (attempt !== connects) return;
    showError("cannot reach the server: " + e);
    setState("offline", "error");
  }
  const opened = new EventSource(subscription({ format: "sse", tail: String(HISTORY) }));
  source = opened;
  opened.onopen = () => setState(paused ? "paused" : "live", paused ? "paused" : "");
  opened.onerror = () => {
    // EventSource reconnects by itself, sending the last id it saw, and
    // the server resumes after it.
    if (opened.readyState === EventSource.CONNECTING) setState("reconnecting…", "connecting");
    else setState("disconnected", "error");
  };
  const received = (event) => { if (source === opened) add(JSON.parse(event.data)); };
  opened.onmessage = received;
  opened.addEventListener("dropped", received);
  opened.addEventListener("notice", received);
}

// Put new filters in the page's URL, and show what they select.
function applyFilters(values) {
  const params = query();
  for (const name of FIELDS) {
    const value = (values[name] ?? params.get(name) ?? "").trim();
    if (value) params.set(name, value); else params.delete(name);
  }
  history.pushState(null, "", "?" + params.toString());
  readFilters();
  panel.mark();
  reset();
  connect();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  applyFilters(Object.fromEntries(FIELDS.map((name) => [name, form.elements[name].value])));
});
form.elements.level.addEventListener("change", () => form.requestSubmit());

window.addEventListener("popstate", () => { readFilters(); panel.mark(); reset(); connect(); });

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
    if (ts) ts.replaceWith(timestamp(line.dataset.time));
  }
}
$("zone").addEventListener("click", () => {
  utc = !utc;
  localStorage.setItem("logio.zone", utc ? "utc" : "local");
  showZone();
});

$("clear").addEventListener("click", reset);

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

// The topics panel: open by default on a wide window; on a narrow one it
// covers the lines, so it closes once a topic is picked.
const narrow = () => window.innerWidth < NARROW;
function showTopics(open) {
  document.body.classList.toggle("topics-open", open);
  $("topics-toggle").classList.toggle("on", open);
  $("topics-toggle").setAttribute("aria-expanded", String(open));
}
const panel = topicsPanel($("topics"), {
  url: () => {
    const params = withToken(new URLSearchParams()).toString();
    return params ? "/topics?" + params : "/topics";
  },
  current: () => Object.fromEntries(["app", "proc", "host"].map((k) => [k, query().get(k) || ""])),
  pick: (fields) => {
    if (narrow()) showTopics(false);
    applyFilters(fields);
  },
});
$("topics-toggle").addEventListener("click", () => {
  const open = !document.body.classList.contains("topics-open");
  showTopics(open);
  if (!narrow()) localStorage.setItem("logio.topics", open ? "open" : "closed");
});
view.addEventListener("click", () => { if (narrow()) showTopics(false); });
showTopics(!narrow() && localStorage.getItem("logio.topics") !== "closed");

readFilters();
showZone();
countLines();
connect();
