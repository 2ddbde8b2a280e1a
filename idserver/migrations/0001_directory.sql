-- Users, groups, memberships, settings, the audit log and rate-limit
-- counters.
--
-- Timestamps are UTC in ISO 8601 text with microseconds and a "+00:00"
-- offset, all written in the same format, so text order is time order.
-- Booleans are 0 or 1.

-- Named counters. uid_number and gid_number hold the next POSIX id to
-- hand out, so an id is never reused, even after its owner is deleted.
-- revision grows with every change of users, groups, memberships or
-- settings; other processes watch it to invalidate their caches.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO counters (name, value) VALUES
    ('uid_number', 10000),
    ('gid_number', 10000),
    ('revision', 0);

-- Usernames, emails and group names are stored in lower case by the
-- application; NOCASE makes the unique indexes catch mixed-case rows
-- written by other means too.
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email TEXT NOT NULL UNIQUE COLLATE NOCASE,
    fallback_email TEXT,
    display_name TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    source TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'ldap')),
    external_id TEXT UNIQUE,
    totp_secret TEXT,
    totp_pending_secret TEXT,
    totp_enabled INTEGER NOT NULL DEFAULT 0 CHECK (totp_enabled IN (0, 1)),
    -- The RFC 6238 time step of the last accepted code; codes of this step
    -- and earlier ones are rejected.
    totp_last_step INTEGER,
    email_verified INTEGER NOT NULL DEFAULT 0 CHECK (email_verified IN (0, 1)),
    uid_number INTEGER NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    password_changed_at TEXT
);

-- Serves the "last active admin" check.
CREATE INDEX users_role_active ON users (role, active);

-- Usernames of deleted users, which are never given out again because a
-- username is the OpenID Connect subject.
CREATE TABLE retired_usernames (
    username TEXT PRIMARY KEY COLLATE NOCASE,
    user_id TEXT NOT NULL,
    retired_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    gid_number INTEGER NOT NULL UNIQUE,
    source TEXT NOT NULL DEFAULT 'local' CHECK (source IN ('local', 'ldap')),
    external_id TEXT UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE memberships (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;

CREATE INDEX memberships_user ON memberships (user_id);

-- One JSON value per key.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT,
    subject TEXT,
    address TEXT,
    entry_point TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);

CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_actor ON audit_events (actor);
CREATE INDEX audit_events_subject ON audit_events (subject);
CREATE INDEX audit_events_kind ON audit_events (kind);

-- One row per failed password check; time is POSIX seconds.
CREATE TABLE rate_limit_failures (
    key TEXT NOT NULL,
    time REAL NOT NULL
);

CREATE INDEX rate_limit_failures_key_time ON rate_limit_failures (key, time);
-- Serves the pruning of old rows across all keys.
CREATE INDEX rate_limit_failures_time ON rate_limit_failures (time);
