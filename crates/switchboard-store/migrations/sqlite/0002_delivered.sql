-- Delivered apart from seen: how far a user's devices have received a conversation, reported by
-- their clients; never behind the read marker (seq), which a read moves too.
ALTER TABLE read_markers ADD COLUMN delivered_seq INTEGER NOT NULL DEFAULT 0;
UPDATE read_markers SET delivered_seq = seq;
