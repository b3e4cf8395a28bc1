-- Edits, deletions, replies and reactions, as in the SQLite schema (0004_message_changes.sql): a
-- change is an entry of the conversation's seq order of its own (kind 1 edit, 2 delete, 3 react;
-- 0 is a message) whose `target` is the changed seq, and the changed message's row is updated in
-- place. A message's `target` is the seq it replies to. Adding columns with constant defaults
-- rewrites no existing row.
ALTER TABLE messages ADD COLUMN kind SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN target BIGINT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;
-- JSON: [{"emoji": "...", "users": ["..."]}], NULL for none.
ALTER TABLE messages ADD COLUMN reactions TEXT;
-- The seq of the newest change applied to the message, 0 for none.
ALTER TABLE messages ADD COLUMN changed_seq BIGINT NOT NULL DEFAULT 0;
