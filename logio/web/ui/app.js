// logio's web viewer: the last records of a subscription, then the live
// stream over server-sent events, resumed from the last id after a drop; a
// range that has ended is read once.  Earlier records are loaded a page at a
// time when the view is scrolled to the top.
// Log text is only ever inserted as text (textContent), never as HTML.
import { instant, rangeControl, sinceAsAt } from "./range.js";
import { literalHighlight, logText, visible } from "./text.js";
import { colourOf, topicsPanel } from "./topics.js";

const FIELDS = ["app", "proc", "host", "log", "level"];
const PARAMS = [...FIELDS, "since", "until"];  // what the page's URL keeps
const LEVELS = ["trace", "debug", "info", "notice", "warn", "error", "fatal"];
const HISTORY = 200;       // records shown on load, and per earlier page
const MAX_LINES = 10000;   // lines the page keeps
const MAX_PENDING = 10000; // lines kept while paused
const NARROW = 900;        // px below which the topics panel covers the lines
const NEAR_TOP = 40;       // px from the top at which earlier records load
const RETRY = 3000;        // ms before a page of earlier records that failed is asked again
// A stream that ends this close to its range's end (ms) has ended with it,
// whatever small difference there is between the two clocks.
const END_SLACK = 2000;

const $ = (id) => document.getElementById(id);
const view = $("log");
const lines = $("lines");
const edge = $("earlier");
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
let cleared = 0;       // so an earlier page asked for before a reset is not shown
let began = 0;         // when the subscription was made (ms), for spans in earlier pages
let earlier = "more";  // whether earlier records may be loaded: see showEarlier

function query() {
  return new URLSearchParams(location.search);
}

function readFilters() {
  const params = query();
  for (const name of FIELDS) form.elements[name].value = params.get(name) || "";
  range.read(params);
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

// The address of the page's subscription, with `extra` parameters (an
// empty one left out).
function subscription(extra) {
  const params = new URLSearchParams();
  const own = query();
  for (const name of PARAMS) {
    const value = own.get(name);
    if (value) params.set(name, value);
  }
  withToken(params);
  for (const [name, value] of Object.entries(extra)) {
    if (value) params.set(name, value); else params.delete(name);
  }
  return "/?" + params.toString();
}

// What a JSON lines answer holds.
function records(text) {
  return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
}

async function refusal(answer) {
  return `${answer.status} ${answer.statusText}: ${(await answer.text()).trim()}`;
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
  if (record.seq !== undefined) line.dataset.seq = String(record.seq);
  return line;
}

function flush() {
  scheduled = false;
  if (!queue.length) return;
  const batch = queue.length > MAX_LINES ? queue.slice(-MAX_LINES) : queue;
  queue = [];
  const fragment = document.createDocumentFragment();
  for (const record of batch) fragment.append(render(record));
  lines.append(fragment);
  let extra = lines.childElementCount - MAX_LINES;
  if (extra > 0) {
    // The oldest lines go; a reader above the newest keeps the lines in view.
    const kept = lines.children[extra];
    const top = kept.offsetTop;
    while (extra-- > 0) lines.firstElementChild.remove();
    if (!follow) view.scrollTop -= top - kept.offsetTop;
    if (earlier !== "loading") showEarlier("more");
  }
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
  cleared++;
  lines.replaceChildren();
  showEarlier("more");
  queue = [];
  pending = [];
  pendingDropped = 0;
  total = 0;
  showPending();
  countLines();
}

// A range with an end shows what it holds and says so; one without goes on
// live.
function showComplete() {
  setState("complete", "complete");
  $("live").textContent = "Jump to the end ↓";
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
  began = Date.now();
  const until = params.get("until");
  // Where the browser cannot read an end the server took, it is taken as
  // past: the range is read once.
  const ends = until ? instant(until, began) : null;
  const over = ends !== null && !(ends > began);
  $("live").textContent = "Jump to live ↓";
  setState("connecting…", "connecting");
  // A range that is over is read once.  Otherwise ask once without
  // following (for one record at most: a range without a tail replays all
  // it holds), so a refused subscription (a bad regex or time, a missing
  // token) shows the server's own message.
  try {
    const check = await fetch(subscription({ follow: "0", format: "json", tail: over ? String(HISTORY) : "1" }));
    if (attempt !== connects) return;
    if (!check.ok) {
      showError(await refusal(check));
      setState("refused", "error");
      return;
    }
    if (over) {
      const found = records(await check.text());
      if (attempt !== connects) return;
      for (const record of found) add(record);
      if (found.length < HISTORY) showEarlier(found.length ? "none" : "empty");
      showComplete();
      return;
    }
  } catch (e) {
    if (attempt !== connects) return;
    showError("cannot reach the server: " + e);
    setState("offline", "error");
    if (over) return;
  }
  const opened = new EventSource(subscription({ format: "sse", tail: String(HISTORY) }));
  source = opened;
  opened.onopen = () => setState(paused ? "paused" : "live", paused ? "paused" : "");
  opened.onerror = () => {
    if (ends !== null && Date.now() >= ends - END_SLACK) {
      // The server ends the stream once its range is over.
      opened.close();
      if (source === opened) showComplete();
      return;
    }
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

// What the top of the view says about earlier records, and whether more
// may be loaded: more, loading, failed (more, a little later), none
// (history holds no earlier ones), empty (a range with no records at all)
// or full (the page holds its most).
function showEarlier(kind, message) {
  earlier = kind;
  const texts = {
    loading: "loading earlier records…",
    none: query().get("since") ? "no earlier records in this range" : "no earlier records",
    empty: "no records in this range",
    full: `the page keeps ${MAX_LINES.toLocaleString()} lines: no earlier ones are loaded`,
  };
  edge.textContent = message || texts[kind] || "";
  edge.className = "edge " + (message ? "failed" : kind);
  edge.hidden = !edge.textContent;
}

// Run `change` to the lines above the view, keeping the lines in view where
// they are.
function keepPlace(change) {
  const below = view.scrollHeight - view.scrollTop;
  change();
  view.scrollTop = view.scrollHeight - below;
}

// Load the page of records before the oldest shown: those of the same
// filters and range until its time, less those it already shows (an until
// includes its time, and times may repeat), prepended.  The page keeps at
// most MAX_LINES lines, so loading stops there.
async function loadEarlier() {
  const first = lines.querySelector(".line[data-seq]");
  if (earlier !== "more" || !first) return;
  const room = MAX_LINES - lines.childElementCount;
  if (room <= 0) {
    keepPlace(() => showEarlier("full"));
    return;
  }
  const generation = cleared;
  const oldest = Number(first.dataset.seq);
  const time = first.dataset.time;
  // The answer holds the shown records of that time too, and any shown
  // later with an earlier time: ask for that many more, and more again if
  // the page holds nothing older.
  let same = 0;
  for (let line = first; line && line.dataset.time === time; line = line.nextElementSibling) same++;
  let wanted = HISTORY + same;
  const since = query().get("since");
  keepPlace(() => showEarlier("loading"));
  let older;
  let ended;
  try {
    for (;;) {
      const answer = await fetch(subscription({
        since: since && sinceAsAt(since, began), until: time, tail: String(wanted),
        follow: "0", format: "json",
      }));
      if (generation !== cleared) return;
      if (!answer.ok) throw new Error(await refusal(answer));
      const found = records(await answer.text()).filter((r) => typeof r.seq === "number");
      if (generation !== cleared) return;
      older = found.filter((record) => record.seq < oldest);
      ended = found.length < wanted;
      if (older.length || ended || wanted >= MAX_LINES) break;
      wanted = Math.min(wanted * 2, MAX_LINES);
    }
  } catch (e) {
    if (generation !== cleared) return;
    // Not at once: keeping the place may scroll, and a scroll near the top
    // asks again.
    keepPlace(() => showEarlier("failed", "cannot load earlier records: " + (e.message || e)));
    setTimeout(() => { if (earlier === "failed") earlier = "more"; }, RETRY);
    return;
  }
  const kept = older.slice(-room);
  keepPlace(() => {
    const fragment = document.createDocumentFragment();
    for (const record of kept) fragment.append(render(record));
    lines.prepend(fragment);
    showEarlier(older.length > room ? "full" : ended ? "none" : "more");
  });
  total += kept.length;
  countLines();
}

// Put new filters in the page's URL, and show what they select.
function applyFilters(values) {
  const params = query();
  for (const name of PARAMS) {
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
  applyFilters({
    ...Object.fromEntries(FIELDS.map((name) => [name, form.elements[name].value])),
    ...range.values(),
  });
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
  range.read(query());
  for (const line of lines.children) {
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
  if (view.scrollTop < NEAR_TOP) loadEarlier();
});
// Lines that do not fill the view cannot scroll: a turn of the wheel up
// asks for earlier ones.
view.addEventListener("wheel", (event) => {
  if (event.deltaY < 0 && view.scrollTop === 0) loadEarlier();
}, { passive: true });
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

const range = rangeControl(form, $("range-custom"), {
  submit: () => form.requestSubmit(),
  utc: () => utc,
});

readFilters();
showZone();
countLines();
connect();
