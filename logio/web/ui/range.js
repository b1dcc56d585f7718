// The time range of the view, as the server takes it in `since` and `until`:
// an RFC 3339 time (2026-12-05T02:00:00Z, any zone) or a span before now
// (90s, 15m, 2h, 7d, 1w).  The header's selector offers live, the last 15
// minutes, hour or day (each then live), or a custom range from and to.

// The `since` of the selector's choices that continue live.
export const PRESETS = ["15m", "1h", "24h"];

const UNITS = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };
// As the server reads a span: up to 9 digits, up to 6 decimals, one unit.
const SPAN = /^\s*(\d{1,9}(?:\.\d{1,6})?)([smhdw])\s*$/;

// The seconds of a span before now, or null if `value` is not a span.
export function spanSeconds(value) {
  const match = SPAN.exec(value);
  return match ? Number(match[1]) * UNITS[match[2]] : null;
}

// The instant (ms since the epoch) a `since` or `until` value names at
// `now`; NaN if the browser cannot read it (the server may still).
export function instant(value, now) {
  const span = spanSeconds(value);
  return span === null ? Date.parse(value) : now - span * 1000;
}

// The `since` that names, at any later time, the instant `since` named at
// `then` (ms since the epoch): a span grows by the time passed since.  So
// earlier pages of "the last 15 min" end where the view began.
export function sinceAsAt(since, then) {
  const span = spanSeconds(since);
  if (span === null) return since;
  const seconds = span + Math.max(Date.now() - then, 0) / 1000;
  return seconds.toFixed(3).replace(/\.?0+$/, "") + "s";
}

const pad = (n) => String(n).padStart(2, "0");

// A value as the selector shows it: a span as "2h ago", a time as
// "12-05 02:00" (with seconds if it has any) in UTC or local time, the date
// left out when it is `sameDay`'s.
function short(value, utc, sameDay) {
  if (spanSeconds(value) !== null) return value.trim() + " ago";
  const when = new Date(value);
  if (isNaN(when)) return value;
  const parts = utc
    ? [when.getUTCMonth() + 1, when.getUTCDate(), when.getUTCHours(), when.getUTCMinutes(), when.getUTCSeconds()]
    : [when.getMonth() + 1, when.getDate(), when.getHours(), when.getMinutes(), when.getSeconds()];
  const [month, day, hour, minute, second] = parts.map(pad);
  const date = `${month}-${day}`;
  const time = `${hour}:${minute}` + (second !== "00" ? `:${second}` : "");
  return date === sameDay ? time : `${date} ${time}`;
}

// A custom range in a few words, for the selector.
export function describeRange(since, until, utc) {
  if (!until) return "since " + short(since, utc);
  if (!since) return "until " + short(until, utc);
  const from = short(since, utc);
  return `${from} → ${short(until, utc, from.split(" ")[0])}`;
}

// The selector's part of the filters form: `select` (presets, the custom
// range in force, "custom…") and `popover` with the from and to fields.
// `submit()` applies the form.
export function rangeControl(form, popover, { submit, utc }) {
  const select = form.elements.range;
  const current = select.querySelector("option[value=current]");
  let chosen = "";  // the selector's value for the range in force

  function open(on) {
    popover.hidden = !on;
    select.setAttribute("aria-expanded", String(on));
    if (on) form.elements.since.focus();
  }

  function cancel() {
    if (popover.hidden) return;
    open(false);
    select.value = chosen;
  }

  // Show the range of the page's URL.
  function read(params) {
    const since = params.get("since") || "";
    const until = params.get("until") || "";
    form.elements.since.value = since;
    form.elements.until.value = until;
    const preset = !until && (since === "" || PRESETS.includes(since));
    current.hidden = preset;
    current.textContent = preset ? "" : describeRange(since, until, utc());
    select.title = preset ? "The time range shown"
      : `since ${since || "the oldest record held"}, until ${until || "now, then live"}`;
    chosen = preset ? since : "current";
    select.value = chosen;
    open(false);
  }

  // The since and until the form asks for.
  function values() {
    const choice = select.value;
    if (choice === "custom" || choice === "current") {
      return { since: form.elements.since.value, until: form.elements.until.value };
    }
    return { since: choice, until: "" };
  }

  select.addEventListener("change", () => {
    if (select.value === "custom") open(true);
    else {
      open(false);
      submit();
    }
  });
  popover.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      cancel();
      select.focus();
    }
  });
  document.addEventListener("pointerdown", (event) => {
    if (!popover.parentElement.contains(event.target)) cancel();
  });
  form.addEventListener("submit", () => open(false));
  return { read, values };
}
