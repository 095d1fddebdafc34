-- The audit log (docs/operations.md, "Audit log"): one row per change, written in the change's own
-- transaction. `client_id` is the client whose resources changed (NULL for changes of no client,
-- such as a platform key's creation); the actor is `actor_key_id` (NULL for the CLI) and its role.
-- Times are unix milliseconds, UTC. `summary` is a JSON object.
CREATE TABLE audit_events (
    id            BIGSERIAL PRIMARY KEY,
    time          BIGINT NOT NULL,
    actor_key_id  BIGINT,
    actor_role    TEXT NOT NULL,
    client_id     BIGINT,
    user_id       BIGINT,
    project_id    BIGINT,
    region_id     BIGINT,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    request_id    TEXT,
    outcome       TEXT NOT NULL,
    summary       TEXT NOT NULL
);
-- A tenant reads its client's events newest first; retention deletes the oldest of every client.
CREATE INDEX audit_events_client_time ON audit_events (client_id, time);
CREATE INDEX audit_events_time ON audit_events (time);
