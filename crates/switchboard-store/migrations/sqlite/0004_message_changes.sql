-- Edits, deletions, replies and reactions. A change is an entry of the conversation's seq order of
-- its own (kind 1 edit, 2 delete, 3 react; 0 is a message) whose `target` is the changed seq, and
-- the changed message's row is updated in place, so that history pages show its current state.
-- A message's `target` is the seq it replies to.
ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN target INTEGER;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
-- JSON: [{"emoji": "...", "users": ["..."]}], NULL for none.
ALTER TABLE messages ADD COLUMN reactions TEXT;
-- The seq of the newest change applied to the message, 0 for none.
ALTER TABLE messages ADD COLUMN changed_seq INTEGER NOT NULL DEFAULT 0;
