-- Per-project quota overrides; projects without a row use the configured defaults.
CREATE TABLE quotas (
    client_id                 INTEGER NOT NULL,
    project_id                INTEGER NOT NULL,
    region_id                 INTEGER NOT NULL,
    security_group_count      INTEGER NOT NULL,
    security_group_rule_count INTEGER NOT NULL,
    PRIMARY KEY (client_id, project_id, region_id)
);

-- Usage per scope, kept by triggers so a quota check reads one row instead of counting.
CREATE TABLE scope_usage (
    client_id  INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    region_id  INTEGER NOT NULL,
    groups     INTEGER NOT NULL,
    rules      INTEGER NOT NULL,
    PRIMARY KEY (client_id, project_id, region_id)
);

INSERT INTO scope_usage (client_id, project_id, region_id, groups, rules)
SELECT g.client_id, g.project_id, g.region_id, COUNT(DISTINCT g.id), COUNT(r.id)
FROM security_groups g LEFT JOIN security_group_rules r ON r.group_id = g.id
GROUP BY g.client_id, g.project_id, g.region_id;

CREATE TRIGGER security_groups_usage_insert AFTER INSERT ON security_groups BEGIN
    INSERT INTO scope_usage (client_id, project_id, region_id, groups, rules)
    VALUES (NEW.client_id, NEW.project_id, NEW.region_id, 1, 0)
    ON CONFLICT (client_id, project_id, region_id) DO UPDATE SET groups = groups + 1;
END;

-- Runs before the cascade removes the group's rules: their count leaves with the group.
CREATE TRIGGER security_groups_usage_delete BEFORE DELETE ON security_groups BEGIN
    UPDATE scope_usage
    SET groups = groups - 1,
        rules = rules - (SELECT COUNT(*) FROM security_group_rules WHERE group_id = OLD.id)
    WHERE client_id = OLD.client_id AND project_id = OLD.project_id AND region_id = OLD.region_id;
END;

CREATE TRIGGER security_group_rules_usage_insert AFTER INSERT ON security_group_rules BEGIN
    UPDATE scope_usage SET rules = rules + 1
    WHERE (client_id, project_id, region_id) = (SELECT client_id, project_id, region_id FROM security_groups WHERE id = NEW.group_id);
END;

-- A rule deleted by the cascade of its group finds no group any more and changes nothing.
CREATE TRIGGER security_group_rules_usage_delete AFTER DELETE ON security_group_rules BEGIN
    UPDATE scope_usage SET rules = rules - 1
    WHERE (client_id, project_id, region_id) = (SELECT client_id, project_id, region_id FROM security_groups WHERE id = OLD.group_id);
END;
