// What the page says when the server refuses something: the protocol's error codes in words.

/** Error codes in words; a code not listed shows the server's own message. */
export const ERROR_TEXT = {
  auth_failed: 'Wrong user name or password.',
  user_exists: 'That name is taken. Log in instead, or pick another name.',
  invalid_name: 'Names are 1–32 characters: a–z, 0–9, _ - and . (not first).',
  invalid_password: 'The password needs 6 to 1024 characters.',
  invalid_token: 'Your session has ended. Please log in again.',
  auth_method_disabled: 'Registration is turned off on this server.',
  room_exists: 'That room exists already: join it from the list.',
  not_a_member: 'You are not a member of this room.',
  text_too_long: 'The message is too long.',
  empty_text: 'The message is empty.',
  user_not_found: 'No such user.',
  room_not_found: 'No such room.',
  forbidden: 'You may not do that in this room.',
  banned: 'That user is banned from this room.',
  muted: 'You are muted in this room: you cannot write here.',
  blocked: 'This user blocks you: your message was not delivered.',
  disconnected: 'Not connected.',
  message_not_found: 'That message is not there any more.',
  message_deleted: 'That message was deleted.',
  not_allowed: 'You cannot change that message.',
  too_many_reactions: 'That message has too many reactions.',
};

/** The words for a refused request (a RequestError of connection.js). */
export function errorText(error) {
  if (error.code === 'login_throttled' && error.retryAfterMs) {
    return `Too many attempts: try again in ${Math.ceil(error.retryAfterMs / 1000)} s.`;
  }
  return ERROR_TEXT[error.code] ?? error.message ?? String(error);
}
