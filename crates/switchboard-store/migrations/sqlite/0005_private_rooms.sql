-- Private rooms and moderation. A room's owner is its creator (`rooms.created_by`), so existing
-- rooms keep theirs; everything else starts empty: every existing room stays public.
ALTER TABLE rooms ADD COLUMN private INTEGER NOT NULL DEFAULT 0;

-- Kept apart from `room_members` so that leaving and coming back keeps a mute.
CREATE TABLE room_moderators (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;

CREATE TABLE room_mutes (
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;

CREATE TABLE room_bans (
    room      TEXT NOT NULL,
    user      TEXT NOT NULL,
    banned_by TEXT NOT NULL,
    banned_at INTEGER NOT NULL,
    PRIMARY KEY (room, user)
) WITHOUT ROWID;

-- `user` receives no private message from `blocked`.
CREATE TABLE blocks (
    user       TEXT NOT NULL,
    blocked    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user, blocked)
) WITHOUT ROWID;
