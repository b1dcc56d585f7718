// How a record's text is shown: controls escaped as the text output shows
// them, SGR colour and style sequences (ESC [ ... m) turned into styled
// spans, and the search pattern's matches marked.  The text is only ever
// inserted as text nodes; styles are set property by property.

// What the text output shows escaped, so a line cannot reorder or hide the
// text around it: C0 controls but tab and newline, DEL and C1 controls, the
// Arabic letter mark, LRM and RLM, the line and paragraph separators, bidi
// embeddings, overrides and isolates.
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

export function visible(text) {
  return text.replace(UNSAFE, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

// The browser's regular expressions backtrack (a pattern like (a+)+$ takes
// exponential time on some lines), so only patterns that are literal text, or
// alternatives of literal text, with an optional (?i), are highlighted, as an
// escaped alternation that cannot backtrack; others are matched by the server
// but not highlighted.
export function literalHighlight(pattern) {
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

// Select Graphic Rendition: the only escape sequences rendered.  Every other
// one keeps its ESC, which visible() shows as \u001b.
const SGR = /\x1b\[([0-9;]*)m/g;

// The 16 standard colours, as backgrounds and as text on those backgrounds.
// On the viewer's own background, text in colours 0-15 takes the theme's
// readable variants instead (.fg0 ... .fg15 in app.css).
const STANDARD = [
  [0, 0, 0], [205, 49, 49], [13, 188, 121], [229, 229, 16],
  [36, 114, 200], [188, 63, 188], [17, 168, 205], [229, 229, 229],
  [102, 102, 102], [241, 76, 76], [35, 209, 139], [245, 245, 67],
  [59, 142, 234], [214, 112, 214], [41, 184, 219], [255, 255, 255],
];

// An xterm 256-colour index as red, green and blue.
function indexed(n) {
  if (n < 16) return STANDARD[n];
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return [v, v, v];
  }
  const level = (c) => (c ? 55 + c * 40 : 0);
  n -= 16;
  return [level(Math.floor(n / 36)), level(Math.floor(n / 6) % 6), level(n % 6)];
}

const PLAIN = Object.freeze({
  bold: false, dim: false, italic: false, underline: false, fg: null, bg: null,
});

// The colour that follows a 38 or 48 at codes[i]: 5;n or 2;r;g;b.  Returns
// the colour (a palette index or an [r, g, b]) and how many codes it took;
// a malformed one takes the rest of the sequence, as terminals do.
function extended(codes, i) {
  const byte = (v) => v !== undefined && v >= 0 && v <= 255;
  if (codes[i] === 5 && byte(codes[i + 1])) return [codes[i + 1], 2];
  if (codes[i] === 2 && byte(codes[i + 1]) && byte(codes[i + 2]) && byte(codes[i + 3])) {
    return [[codes[i + 1], codes[i + 2], codes[i + 3]], 4];
  }
  return [undefined, codes.length];
}

// The state after one SGR sequence's parameters.
function apply(state, params) {
  const codes = params === "" ? [0] : params.split(";").map((p) => (p === "" ? 0 : Number(p)));
  const next = { ...state };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) Object.assign(next, PLAIN);
    else if (c === 1) next.bold = true;
    else if (c === 2) next.dim = true;
    else if (c === 3) next.italic = true;
    else if (c === 4) next.underline = true;
    else if (c === 22) next.bold = next.dim = false;
    else if (c === 23) next.italic = false;
    else if (c === 24) next.underline = false;
    else if (c >= 30 && c <= 37) next.fg = c - 30;
    else if (c >= 90 && c <= 97) next.fg = c - 90 + 8;
    else if (c === 39) next.fg = null;
    else if (c >= 40 && c <= 47) next.bg = c - 40;
    else if (c >= 100 && c <= 107) next.bg = c - 100 + 8;
    else if (c === 49) next.bg = null;
    else if (c === 38 || c === 48) {
      const [colour, used] = extended(codes, i + 1);
      if (colour !== undefined) next[c === 38 ? "fg" : "bg"] = colour;
      i += used;
    }
  }
  return Object.keys(PLAIN).every((key) => next[key] === PLAIN[key]) ? PLAIN : next;
}

// The text split at its SGR sequences: [text, state] pairs, the sequences
// themselves dropped.
export function segments(raw) {
  const found = [];
  let state = PLAIN;
  let last = 0;
  SGR.lastIndex = 0;
  let match;
  while ((match = SGR.exec(raw)) !== null) {
    if (match.index > last) found.push([raw.slice(last, match.index), state]);
    state = apply(state, match[1]);
    last = SGR.lastIndex;
  }
  if (last < raw.length) found.push([raw.slice(last), state]);
  return found;
}

const css = ([r, g, b]) => `rgb(${r} ${g} ${b})`;

// A colour for text on the viewer's background in each theme: its lightness
// held below 42 % for the light theme and above 62 % for the dark one.
function readable([r, g, b]) {
  r /= 255; g /= 255; b /= 255;
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const l = (max + min) / 2;
  const d = max - min;
  let h = 0;
  let s = 0;
  if (d) {
    s = d / (1 - Math.abs(2 * l - 1));
    if (max === r) h = ((g - b) / d) % 6;
    else if (max === g) h = (b - r) / d + 2;
    else h = (r - g) / d + 4;
    h *= 60;
  }
  const hsl = (light) => `hsl(${Math.round(h)} ${Math.round(s * 100)}% ${Math.round(light * 100)}%)`;
  return [hsl(Math.min(l, 0.42)), hsl(Math.max(l, 0.62))];
}

function styled(state) {
  if (state === PLAIN) return null;
  const node = document.createElement("span");
  const classes = ["sgr"];
  if (state.bold) classes.push("sgr-bold");
  if (state.dim) classes.push("sgr-dim");
  if (state.italic) classes.push("sgr-italic");
  if (state.underline) classes.push("sgr-underline");
  const { fg, bg } = state;
  if (bg !== null) {
    const back = typeof bg === "number" ? indexed(bg) : bg;
    classes.push("sgr-bg");
    node.style.backgroundColor = css(back);
    // Text on a background the line chose: its own colour as given, else
    // black or white, whichever reads on that background.
    if (fg !== null) node.style.color = css(typeof fg === "number" ? indexed(fg) : fg);
    else {
      const [r, g, b] = back;
      node.style.color = 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#000" : "#fff";
    }
  } else if (typeof fg === "number" && fg < 16) {
    classes.push(`fg${fg}`);
  } else if (fg !== null) {
    const [light, dark] = readable(typeof fg === "number" ? indexed(fg) : fg);
    classes.push("sgr-rgb");
    node.style.setProperty("--sgr-light", light);
    node.style.setProperty("--sgr-dark", dark);
  }
  node.className = classes.join(" ");
  return node;
}

// Append text to a node, its parts in [start, end) ranges of the whole
// text (offset by `at`) wrapped in <mark>.
function appendMarked(node, text, at, ranges) {
  let position = 0;
  for (const [start, end] of ranges) {
    const from = Math.max(start - at, position);
    const to = Math.min(end - at, text.length);
    if (to <= from) continue;
    if (from > position) node.append(text.slice(position, from));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(from, to);
    node.append(mark);
    position = to;
  }
  if (position < text.length) node.append(text.slice(position));
}

// A record's text as a span: controls escaped, SGR rendered, and the matches
// of `highlight` (a global RegExp or null) marked in the text as shown, so a
// match may run across a change of colour.
export function logText(raw, highlight) {
  const node = document.createElement("span");
  node.className = "text";
  const parts = segments(raw).map(([text, state]) => [visible(text), state]);
  const ranges = [];
  if (highlight) {
    const shown = parts.map(([text]) => text).join("");
    highlight.lastIndex = 0;
    let match;
    while ((match = highlight.exec(shown)) !== null) {
      if (match[0] === "") { highlight.lastIndex++; continue; }
      ranges.push([match.index, match.index + match[0].length]);
    }
  }
  let at = 0;
  for (const [text, state] of parts) {
    const span = styled(state);
    appendMarked(span || node, text, at, ranges);
    if (span) node.append(span);
    at += text.length;
  }
  return node;
}
