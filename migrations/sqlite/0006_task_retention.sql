-- Bounded storage (docs/operations.md, "Retention"): finished tasks are pruned by age, oldest
-- first, in batches; unfinished tasks are counted per client on every enqueue.
CREATE INDEX tasks_finished ON tasks (finished_on) WHERE finished_on IS NOT NULL;
CREATE INDEX tasks_open_client ON tasks (client_id) WHERE state IN ('NEW', 'RUNNING');
