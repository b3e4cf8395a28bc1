-- Private rooms and moderation (as migrations/sqlite/0005_private_rooms.sql). A room's owner is
-- its creator (`rooms.created_by`), so existing rooms keep theirs; every existing room stays
-- public.
ALTER TABLE rooms ADD COLUMN private BOOLEAN NOT NULL DEFAULT FALSE;

-- Kept apart from `room_members` so that leaving and coming back keeps a mute.
CREATE TABLE room_moderators (
    room   TEXT COLLATE "C" NOT NULL,
    "user" TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (room, "user")
);

CREATE TABLE room_mutes (
    room   TEXT COLLATE "C" NOT NULL,
    "user" TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (room, "user")
);

CREATE TABLE room_bans (
    room      TEXT COLLATE "C" NOT NULL,
    "user"    TEXT COLLATE "C" NOT NULL,
    banned_by TEXT COLLATE "C" NOT NULL,
    banned_at BIGINT NOT NULL,
    PRIMARY KEY (room, "user")
);

-- `user` receives no private message from `blocked`.
CREATE TABLE blocks (
    "user"     TEXT COLLATE "C" NOT NULL,
    blocked    TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY ("user", blocked)
);
