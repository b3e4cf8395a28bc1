// Keeping the reader's place in the message list while older pages are added above it.
//
// The anchor is a message (an element with `data-seq`), never a day separator or notice: those are
// rebuilt or moved when an older page arrives, and an anchor that leaves the page would leave the
// view pinned to the top, where scrolling further up fires no `scroll` event and loads nothing.

/** How close to the top (px) the view must be for the next older page to be loaded. */
export const LOAD_OLDER_WITHIN = 200;

/** The first message visible in `box`, and how far below the box's top edge it is. */
export function captureAnchor(box, list) {
  const boxTop = box.getBoundingClientRect().top;
  for (const child of list.querySelectorAll(':scope > [data-seq]')) {
    const rect = child.getBoundingClientRect();
    if (rect.bottom > boxTop) return { seq: child.dataset.seq, offset: rect.top - boxTop };
  }
  return null;
}

/** Scrolls `box` so that the anchored message is where it was before the list changed. */
export function restoreAnchor(box, list, anchor) {
  if (!anchor) return;
  const element = list.querySelector(`:scope > [data-seq="${anchor.seq}"]`);
  if (!element) return;
  const offset = element.getBoundingClientRect().top - box.getBoundingClientRect().top;
  box.scrollTop += offset - anchor.offset;
}

/** Near the top of the list: the next older page is due. */
export function nearTop(box) {
  return box.scrollTop < LOAD_OLDER_WITHIN;
}
