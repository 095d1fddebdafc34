-- Roles of API keys (docs/security.md): a tenant key acts for one client; a platform key is the
-- operator's control plane; an agent key is one host's agent. Keys made before roles existed were
-- all tenant keys. Platform and agent keys have no client: their client_id and user_id are 0.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'tenant' CHECK (role IN ('tenant', 'platform', 'agent'));
ALTER TABLE api_keys ADD COLUMN host TEXT;

-- One agent per host enforces every client's ports there, so an agent's report belongs to the host,
-- not to a client. Rows of several clients' agents on one host merge into the host's furthest report.
CREATE TABLE agents_by_host (
    host             TEXT PRIMARY KEY,
    applied_revision BIGINT NOT NULL,
    reported_at      BIGINT NOT NULL
);
INSERT INTO agents_by_host (host, applied_revision, reported_at)
SELECT host, MAX(applied_revision), MAX(reported_at) FROM agents GROUP BY host;
DROP TABLE agents;
ALTER TABLE agents_by_host RENAME TO agents;
