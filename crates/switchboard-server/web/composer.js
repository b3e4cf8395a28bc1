// The length limit, checked while typing, so an over-long message is never sent only to be refused
// and lost.

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
