// What the page does with message text beyond showing it: links made clickable, and the length
// limit checked while typing, so an over-long message is never sent only to be refused and lost.

import { h } from './dom.js';

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

/** How many characters (Unicode scalar values, as the server counts) `text` is over `max`. */
export function charactersOver(text, max) {
  if (text.length <= max) return 0;
  return Math.max(0, [...text].length - max);
}

/** The warning under the composer, and whether sending is allowed. */
export function showLimit(element, button, text, max) {
  const over = charactersOver(text, max);
  element.hidden = over === 0;
  element.textContent = over === 0 ? '' : `${over} character${over === 1 ? '' : 's'} too long: messages hold up to ${max}.`;
  button.disabled = over > 0;
  return over === 0;
}
