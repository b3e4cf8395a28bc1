// DOM helpers, and message texts as nodes with their links made clickable. Everything a user typed
// (names, message texts) goes into the page as text nodes: nothing here ever parses a string as HTML.

/**
 * Creates an element. `props`: `class`, `text` (set as textContent), `title`, `dataset` (object),
 * `on` (object of event listeners), any other key is set as an attribute. Children: nodes or
 * strings (strings become text nodes); null and false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') element.className = value;
    else if (key === 'text') element.textContent = value;
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key === 'on') for (const [event, listener] of Object.entries(value)) element.addEventListener(event, listener);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return element;
}

/** http(s) URLs in a text; the trailing punctuation of a sentence is not part of one. */
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"]+[^\s<>".,;:!?)\]'’”]/g;

/**
 * A message text as nodes: text nodes, and `<a>` elements for the URLs in it (opened in a new
 * tab, without giving that tab a handle on this page). Nothing is parsed as HTML.
 */
export function linkify(text) {
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    if (match.index > last) nodes.push(text.slice(last, match.index));
    nodes.push(h('a', { href: match[0], target: '_blank', rel: 'noopener noreferrer', text: match[0] }));
    last = match.index + match[0].length;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

/** `document.getElementById`, failing loudly when the page lacks the element. */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`missing element #${id}`);
  return element;
}

/** Replaces the children of `parent` with `children`, reusing nodes already there. */
export function setChildren(parent, children) {
  let index = 0;
  for (const child of children) {
    const current = parent.childNodes[index];
    if (current !== child) parent.insertBefore(child, current ?? null);
    index += 1;
  }
  while (parent.childNodes.length > index) parent.lastChild.remove();
}

/** The time of day of a timestamp (ms), `12:04`; the day goes into separators. */
export function formatTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** `Today`, `Yesterday` or a date, for day separators. */
export function formatDay(ms) {
  const date = new Date(ms);
  const today = new Date();
  const startOfDay = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((startOfDay(today) - startOfDay(date)) / 86_400_000);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  return date.toLocaleDateString([], { weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' });
}
