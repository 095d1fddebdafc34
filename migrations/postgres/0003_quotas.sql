-- Per-project quota overrides and per-scope usage; mirrors migrations/sqlite/0003_quotas.sql.
CREATE TABLE quotas (
    client_id                 BIGINT NOT NULL,
    project_id                BIGINT NOT NULL,
    region_id                 BIGINT NOT NULL,
    security_group_count      BIGINT NOT NULL,
    security_group_rule_count BIGINT NOT NULL,
    PRIMARY KEY (client_id, project_id, region_id)
);

-- Usage per scope, kept by triggers so a quota check reads one row instead of counting.
CREATE TABLE scope_usage (
    client_id  BIGINT NOT NULL,
    project_id BIGINT NOT NULL,
    region_id  BIGINT NOT NULL,
    groups     BIGINT NOT NULL,
    rules      BIGINT NOT NULL,
    PRIMARY KEY (client_id, project_id, region_id)
);

INSERT INTO scope_usage (client_id, project_id, region_id, groups, rules)
SELECT g.client_id, g.project_id, g.region_id, COUNT(DISTINCT g.id), COUNT(r.id)
FROM security_groups g LEFT JOIN security_group_rules r ON r.group_id = g.id
GROUP BY g.client_id, g.project_id, g.region_id;

CREATE FUNCTION palisade_group_usage_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO scope_usage AS u (client_id, project_id, region_id, groups, rules)
    VALUES (NEW.client_id, NEW.project_id, NEW.region_id, 1, 0)
    ON CONFLICT (client_id, project_id, region_id) DO UPDATE SET groups = u.groups + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER security_groups_usage_insert AFTER INSERT ON security_groups
    FOR EACH ROW EXECUTE FUNCTION palisade_group_usage_insert();

-- Runs before the cascade removes the group's rules: their count leaves with the group.
CREATE FUNCTION palisade_group_usage_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE scope_usage
    SET groups = groups - 1,
        rules = rules - (SELECT COUNT(*) FROM security_group_rules WHERE group_id = OLD.id)
    WHERE client_id = OLD.client_id AND project_id = OLD.project_id AND region_id = OLD.region_id;
    RETURN OLD;
END $$;
CREATE TRIGGER security_groups_usage_delete BEFORE DELETE ON security_groups
    FOR EACH ROW EXECUTE FUNCTION palisade_group_usage_delete();

CREATE FUNCTION palisade_rule_usage_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE scope_usage u SET rules = u.rules + 1
    FROM security_groups g
    WHERE g.id = NEW.group_id AND (u.client_id, u.project_id, u.region_id) = (g.client_id, g.project_id, g.region_id);
    RETURN NULL;
END $$;
CREATE TRIGGER security_group_rules_usage_insert AFTER INSERT ON security_group_rules
    FOR EACH ROW EXECUTE FUNCTION palisade_rule_usage_insert();

-- A rule deleted by the cascade of its group finds no group any more and changes nothing.
CREATE FUNCTION palisade_rule_usage_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE scope_usage u SET rules = u.rules - 1
    FROM security_groups g
    WHERE g.id = OLD.group_id AND (u.client_id, u.project_id, u.region_id) = (g.client_id, g.project_id, g.region_id);
    RETURN NULL;
END $$;
CREATE TRIGGER security_group_rules_usage_delete AFTER DELETE ON security_group_rules
    FOR EACH ROW EXECUTE FUNCTION palisade_rule_usage_delete();
