-- A conversation's newest message is read from the clustered key of `messages` (one descent)
-- instead of being rewritten into `conversations` with every message: that row's page was a third
-- of the pages a private message dirtied, each written to the WAL and again by the checkpoint.
-- `conversations` now only lists which conversations exist and whose they are.
ALTER TABLE conversations DROP COLUMN last_seq;
ALTER TABLE conversations DROP COLUMN last_ts;
