// JSON kept in the browser's storage (the session, the cursors, the outbox).

/** The value stored under `key`, or null when there is none or it does not parse. */
export function loadJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) ?? 'null');
  } catch {
    return null;
  }
}
