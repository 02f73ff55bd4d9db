-- Console accounts and their server-side sessions. Client addresses are never stored here:
-- the login throttle lives in memory.
CREATE TABLE console_users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('analyst', 'release_manager', 'admin')),
    -- argon2id PHC string (algorithm, parameters, salt and hash)
    password_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE console_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- SHA-256 of the random id in the cookie: a leaked table cannot be replayed as cookies
    session_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES console_users (id) ON DELETE CASCADE,
    -- synchronizer token every state-changing form of this session carries
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    -- absolute end, whatever the activity
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
