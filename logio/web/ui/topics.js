// The topics panel, fed by /topics: every app with its procs and hosts and
// how many records each published, refreshed every few seconds; a click
// filters the view to it.  And one colour per app, the same in the panel
// and on every line.

const REFRESH = 3000;  // ms between two reads of /topics
const QUIET = 10 * 60 * 1000;  // ms without a record after which a topic is shown faded

// Colours far apart from each other (and from the red of errors), handed
// out to apps in the order they appear, so the first few are the most
// distinct; each name keeps its colour in this browser.  Six hues at the
// theme's lightness, six more between them at a second lightness, then
// golden-angle steps.
const HUES = [212, 30, 140, 285, 185, 330, 50, 250, 95, 170, 305, 15];
const KEPT = "logio.colours";
const MOST_KEPT = 500;

let slots = null;  // app -> its place in the order of appearance

function slotOf(app) {
  if (slots === null) {
    try {
      slots = new Map(Object.entries(JSON.parse(localStorage.getItem(KEPT) || "{}")));
    } catch (e) {
      slots = new Map();
    }
    if (slots.size > MOST_KEPT) slots.clear();
  }
  let slot = slots.get(app);
  if (slot === undefined) {
    slot = slots.size;
    slots.set(app, slot);
    try {
      localStorage.setItem(KEPT, JSON.stringify(Object.fromEntries(slots)));
    } catch (e) {
      // Storage full or off: the colour holds for this page only.
    }
  }
  return slot;
}

// The CSS colour of an app, its lightness set by the theme.
export function colourOf(app) {
  const slot = slotOf(app);
  const hue = slot < HUES.length ? HUES[slot] : Math.round(slot * 137.508) % 360;
  const lightness = slot % HUES.length < 6 ? "var(--hue-l)" : "var(--hue-l2)";
  return `hsl(${hue} 65% ${lightness})`;
}

// A regular expression that matches exactly this name.
function exact(name) {
  return "^" + name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "$";
}

function element(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// One row of the panel: a button that sets the app, proc and host filters
// to `fields` (each an exact pattern, or "" for any).
function row(cls, fields, name, records, detail) {
  const button = element("button", "topic " + cls);
  button.type = "button";
  for (const [key, value] of Object.entries(fields)) button.dataset[key] = value;
  button.append(element("span", "name", name));
  if (detail) button.append(element("span", "detail", detail));
  button.append(element("span", "n", records.toLocaleString()));
  button.dataset.records = String(records);
  return button;
}

function summed(topics, key) {
  const groups = new Map();
  for (const topic of topics) {
    const group = groups.get(topic[key]) || { records: 0, last: "", publishers: 0, topics: [] };
    group.records += topic.records;
    group.publishers += topic.publishers;
    if (topic.last > group.last) group.last = topic.last;
    group.topics.push(topic);
    groups.set(topic[key], group);
  }
  return groups;
}

function describe(group) {
  const publishers = group.publishers === 1 ? "1 publisher" : `${group.publishers} publishers`;
  return `${group.records.toLocaleString()} records, the last at ${group.last}; ${publishers} connected`;
}

// Start the panel in `root`.  `url()` is the address of /topics (with the
// page's token), `current()` the app, proc and host filters in force, and
// `pick(fields)` applies new ones.
export function topicsPanel(root, { url, current, pick }) {
  const list = root.querySelector(".topic-list");
  const hosts = root.querySelector(".host-list");
  const summary = root.querySelector(".summary");
  const find = root.querySelector("input[type=search]");
  let topics = [];
  let seen = "";

  function mark() {
    const now = current();
    for (const button of root.querySelectorAll("button.topic")) {
      const fields = { app: "", proc: "", host: "", ...button.dataset };
      const on = ["app", "proc", "host"].every((key) => fields[key] === (now[key] || ""));
      button.classList.toggle("active", on);
      if (on) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
  }

  function show() {
    const wanted = find.value.trim().toLowerCase();
    const shown = wanted
      ? topics.filter((t) => [t.app, t.proc, t.host].some((v) => v.toLowerCase().includes(wanted)))
      : topics;
    const now = Date.now();
    const quiet = (group) => now - Date.parse(group.last) > QUIET;
    const apps = summed(shown, "app");
    const total = topics.reduce((sum, t) => sum + t.records, 0);
    const appCount = summed(topics, "app").size;
    summary.textContent = `${appCount.toLocaleString()} ${appCount === 1 ? "app" : "apps"} · ` +
      `${total.toLocaleString()} records`;
    const items = [row("all", {}, "All topics", total)];
    for (const [app, group] of apps) {
      const section = element("div", "app");
      const head = row("app-row", { app: exact(app) }, app, group.records);
      head.title = describe(group);
      head.classList.toggle("quiet", quiet(group));
      const swatch = element("span", "swatch");
      swatch.style.backgroundColor = colourOf(app);
      head.querySelector(".name").style.color = colourOf(app);
      head.prepend(swatch);
      if (group.publishers) head.classList.add("publishing");
      section.append(head);
      for (const [proc, procs] of summed(group.topics, "proc")) {
        const names = procs.topics.map((t) => t.host);
        const detail = names.length > 2 ? `${names.length} hosts` : names.join(", ");
        const item = row("proc-row", { app: exact(app), proc: exact(proc) }, proc,
          procs.records, detail);
        item.title = describe(procs);
        item.classList.toggle("quiet", quiet(procs));
        section.append(item);
      }
      items.push(section);
    }
    if (!apps.size) items.push(element("p", "empty", topics.length ? "no topic matches" : "no topics yet"));
    list.replaceChildren(...items);
    const byHost = [...summed(shown, "host")].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    hosts.replaceChildren(...byHost.map(([host, group]) => {
      const item = row("host-row", { host: exact(host) }, host, group.records);
      item.title = describe(group);
      item.classList.toggle("quiet", quiet(group));
      return item;
    }));
    mark();
  }

  async function refresh() {
    if (!document.hidden) {
      try {
        const answer = await fetch(url(), { cache: "no-store" });
        const text = await answer.text();
        if (!answer.ok) throw new Error(`${answer.status} ${answer.statusText}: ${text.trim()}`);
        if (text !== seen) {
          seen = text;
          topics = JSON.parse(text);
          show();
        }
        root.classList.remove("failed");
      } catch (e) {
        root.classList.add("failed");
        summary.textContent = "cannot read /topics: " + (e.message || e);
      }
    }
    setTimeout(refresh, REFRESH);
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button.topic");
    if (!button) return;
    const fields = { app: "", proc: "", host: "" };
    if (!button.classList.contains("active")) Object.assign(fields, button.dataset);
    delete fields.records;
    pick(fields);
  });
  find.addEventListener("input", show);
  refresh();
  return { mark };
}
