-- Switchboard's initial schema. Names are normalised (lowercase) by the core before they get here.

CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    -- NULL for users who log in by JWT or in open mode.
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    -- Hex SHA-256 of the token: the token itself is never stored.
    token_hash TEXT PRIMARY KEY NOT NULL,
    user       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE rooms (
    name       TEXT PRIMARY KEY NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE room_members (
    room      TEXT NOT NULL,
    user      TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;

CREATE INDEX room_members_by_user ON room_members (user, room);

-- One row per conversation that has messages, so listing a user's conversations does not scan
-- messages. DMs ('dm:<a>:<b>') record both users; rooms ('room:<name>') leave them NULL.
CREATE TABLE conversations (
    conv     TEXT PRIMARY KEY NOT NULL,
    user_a   TEXT,
    user_b   TEXT,
    last_seq INTEGER NOT NULL,
    last_ts  INTEGER NOT NULL
);

CREATE INDEX conversations_by_user_a ON conversations (user_a) WHERE user_a IS NOT NULL;
CREATE INDEX conversations_by_user_b ON conversations (user_b) WHERE user_b IS NOT NULL;

-- Clustered by (conv, seq): paging through one conversation reads contiguous pages.
CREATE TABLE messages (
    conv      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    id        TEXT NOT NULL,
    sender    TEXT NOT NULL,
    recipient TEXT,
    room      TEXT,
    text      TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    idem_key  TEXT,
    PRIMARY KEY (conv, seq)
) WITHOUT ROWID;

-- Idempotency keys are per sender; most messages have none, so only keyed ones are indexed.
CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (sender, idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE read_markers (
    user TEXT NOT NULL,
    conv TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (user, conv)
) WITHOUT ROWID;
