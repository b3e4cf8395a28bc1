-- Switchboard's initial PostgreSQL schema: the tables of the SQLite one (migrations/sqlite), with
-- BIGINT for times and seqs. Names are normalised (lowercase) by the core before they get here.
--
-- Text keys use the "C" collation, byte order as in SQLite, whatever the database's locale: the
-- listings come out in the same order from both stores, and comparisons stay cheap.
-- `user` is a reserved word in PostgreSQL, hence "user" in quotes.

CREATE TABLE users (
    name          TEXT COLLATE "C" PRIMARY KEY,
    -- NULL for users who log in by JWT or in open mode.
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    -- Hex SHA-256 of the token: the token itself is never stored.
    token_hash TEXT COLLATE "C" PRIMARY KEY,
    "user"     TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE rooms (
    name       TEXT COLLATE "C" PRIMARY KEY,
    created_by TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE room_members (
    room      TEXT COLLATE "C" NOT NULL,
    "user"    TEXT COLLATE "C" NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room, "user")
);

CREATE INDEX room_members_by_user ON room_members ("user", room);

-- One row per conversation that has messages, so listing a user's conversations does not scan
-- messages. DMs ('dm:<a>:<b>') record both users; rooms ('room:<name>') leave them NULL.
-- The row is also the conversation's sequence: an append takes its lock and moves `last_seq`
-- in the transaction that inserts the messages, so appends from every node serialise on it.
CREATE TABLE conversations (
    conv     TEXT COLLATE "C" PRIMARY KEY,
    user_a   TEXT COLLATE "C",
    user_b   TEXT COLLATE "C",
    last_seq BIGINT NOT NULL,
    last_ts  BIGINT NOT NULL
);

CREATE INDEX conversations_by_user_a ON conversations (user_a) WHERE user_a IS NOT NULL;
CREATE INDEX conversations_by_user_b ON conversations (user_b) WHERE user_b IS NOT NULL;

CREATE TABLE messages (
    conv      TEXT COLLATE "C" NOT NULL,
    seq       BIGINT NOT NULL,
    id        TEXT COLLATE "C" NOT NULL,
    sender    TEXT COLLATE "C" NOT NULL,
    recipient TEXT COLLATE "C",
    room      TEXT COLLATE "C",
    text      TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    idem_key  TEXT COLLATE "C",
    PRIMARY KEY (conv, seq)
);

-- Idempotency keys are per sender; most messages have none, so only keyed ones are indexed.
-- Two nodes racing on one new key: this index fails the later transaction, which the store
-- retries and then finds the original.
CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (sender, idem_key) WHERE idem_key IS NOT NULL;

CREATE TABLE read_markers (
    "user" TEXT COLLATE "C" NOT NULL,
    conv   TEXT COLLATE "C" NOT NULL,
    seq    BIGINT NOT NULL,
    PRIMARY KEY ("user", conv)
);
