-- Palisade schema, PostgreSQL dialect; mirrors migrations/sqlite/0001_init.sql.
-- Times are unix milliseconds (UTC) as BIGINT; ids are hyphenated UUID text; JSON is stored as
-- TEXT, byte for byte as written. Creation order is the BIGSERIAL `seq` column (SQLite: rowid).
-- Text that is sorted uses the "C" collation so both backends order it the same way.

CREATE TABLE security_groups (
    seq             BIGSERIAL NOT NULL UNIQUE,
    id              TEXT PRIMARY KEY,
    client_id       BIGINT NOT NULL,
    project_id      BIGINT NOT NULL,
    region_id       BIGINT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    revision_number BIGINT NOT NULL
);
CREATE INDEX security_groups_scope ON security_groups (client_id, project_id, region_id, seq);
CREATE INDEX security_groups_name ON security_groups (client_id, project_id, region_id, name);

CREATE TABLE security_group_rules (
    seq              BIGSERIAL NOT NULL UNIQUE,
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
    created_at       BIGINT NOT NULL
);
CREATE INDEX security_group_rules_group ON security_group_rules (group_id, seq);
CREATE INDEX security_group_rules_remote ON security_group_rules (remote_group_id) WHERE remote_group_id IS NOT NULL;

CREATE TABLE security_group_tags (
    group_id  TEXT NOT NULL REFERENCES security_groups (id) ON DELETE CASCADE,
    key       TEXT COLLATE "C" NOT NULL,
    value     TEXT COLLATE "C" NOT NULL,
    read_only BOOLEAN NOT NULL,
    PRIMARY KEY (group_id, key)
);
CREATE INDEX security_group_tags_key ON security_group_tags (key, value);

CREATE TABLE tasks (
    seq               BIGSERIAL NOT NULL UNIQUE,
    id                TEXT PRIMARY KEY,
    client_id         BIGINT NOT NULL,
    user_id           BIGINT NOT NULL,
    project_id        BIGINT,
    region_id         BIGINT,
    task_type         TEXT NOT NULL,
    state             TEXT NOT NULL,
    request_id        TEXT,
    data              TEXT,
    payload           TEXT NOT NULL,
    error             TEXT,
    created_resources TEXT,
    created_on        BIGINT NOT NULL,
    updated_on        BIGINT,
    finished_on       BIGINT,
    acknowledged_at   BIGINT,
    acknowledged_by   BIGINT,
    claimed_by        TEXT,
    lease_until       BIGINT
);
CREATE INDEX tasks_client ON tasks (client_id, created_on);
CREATE INDEX tasks_pending ON tasks (seq) WHERE state IN ('NEW', 'RUNNING');

CREATE TABLE api_keys (
    id          BIGSERIAL PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    client_id   BIGINT NOT NULL,
    user_id     BIGINT NOT NULL,
    projects    TEXT,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
