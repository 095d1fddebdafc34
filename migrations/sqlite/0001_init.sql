-- Palisade schema, SQLite dialect. Times are unix milliseconds (UTC); ids are hyphenated UUID text.
-- Order of creation is the table's rowid.

CREATE TABLE security_groups (
    id              TEXT PRIMARY KEY,
    client_id       INTEGER NOT NULL,
    project_id      INTEGER NOT NULL,
    region_id       INTEGER NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    revision_number INTEGER NOT NULL
);
CREATE INDEX security_groups_scope ON security_groups (client_id, project_id, region_id);
CREATE INDEX security_groups_name ON security_groups (client_id, project_id, region_id, name);

CREATE TABLE security_group_rules (
    id               TEXT PRIMARY KEY,
    group_id         TEXT NOT NULL REFERENCES security_groups (id) ON DELETE CASCADE,
    direction        TEXT NOT NULL,
    ethertype        TEXT NOT NULL,
    protocol         TEXT,
    port_range_min   INTEGER,
    port_range_max   INTEGER,
    remote_ip_prefix TEXT,
    remote_group_id  TEXT,
    description      TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX security_group_rules_group ON security_group_rules (group_id);
CREATE INDEX security_group_rules_remote ON security_group_rules (remote_group_id) WHERE remote_group_id IS NOT NULL;

CREATE TABLE security_group_tags (
    group_id  TEXT NOT NULL REFERENCES security_groups (id) ON DELETE CASCADE,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    read_only INTEGER NOT NULL,
    PRIMARY KEY (group_id, key)
);
CREATE INDEX security_group_tags_key ON security_group_tags (key, value);

CREATE TABLE tasks (
    id                TEXT PRIMARY KEY,
    client_id         INTEGER NOT NULL,
    user_id           INTEGER NOT NULL,
    project_id        INTEGER,
    region_id         INTEGER,
    task_type         TEXT NOT NULL,
    state             TEXT NOT NULL,
    request_id        TEXT,
    data              TEXT,
    payload           TEXT NOT NULL,
    error             TEXT,
    created_resources TEXT,
    created_on        INTEGER NOT NULL,
    updated_on        INTEGER,
    finished_on       INTEGER,
    acknowledged_at   INTEGER,
    acknowledged_by   INTEGER,
    claimed_by        TEXT,
    lease_until       INTEGER
);
CREATE INDEX tasks_client ON tasks (client_id, created_on);
CREATE INDEX tasks_pending ON tasks (state) WHERE state IN ('NEW', 'RUNNING');

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    client_id   INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    projects    TEXT,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
