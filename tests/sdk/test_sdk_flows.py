"""Acceptance flows for Palisade, driven by the official `gcore` 0.59.0 Python SDK.

Each test runs twice (loose and strict response validation) in its own project, against a
real `palisade serve` process (see conftest.py). References like "§5.2" point to sections of
shared/contract/CONTRACT.md.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import gcore
import httpx
import pytest

from conftest import CLIENT_ID, REGION_ID, USER_ID, next_project_id

SG_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\+0000|Z)$")
TASK_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def ingress(protocol: str, port: int, prefix: str, description: str, ethertype: str = "IPv4") -> dict:
    """A rule input letting `protocol` in on one port from `prefix`."""
    return {
        "direction": "ingress",
        "ethertype": ethertype,
        "protocol": protocol,
        "port_range_min": port,
        "port_range_max": port,
        "remote_ip_prefix": prefix,
        "description": description,
    }


SSH = ingress("tcp", 22, "10.0.0.0/8", "ssh")
HTTP = ingress("tcp", 80, "0.0.0.0/0", "http")
DNS6 = ingress("udp", 53, "2001:db8::/32", "dns over v6", ethertype="IPv6")
# Only the required field: ethertype IPv4, protocol null (all), description "" by default (§4.5).
EGRESS_ALL = {"direction": "egress"}


# ------------------------------------------------------------------------------------------
# helpers


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def assert_recent(value: datetime, what: str) -> None:
    assert isinstance(value, datetime), f"{what} is not a datetime: {value!r}"
    assert value.tzinfo is not None, f"{what} has no timezone: {value!r}"
    delta = abs((now_utc() - value).total_seconds())
    assert delta < 300, f"{what}={value.isoformat()} is {delta:.0f}s away from now"


def expected(spec: dict) -> tuple:
    """The normalised identity of a rule input (defaults of §4.5 applied)."""
    return (
        spec["direction"],
        spec.get("ethertype", "IPv4"),
        spec.get("protocol"),
        spec.get("port_range_min"),
        spec.get("port_range_max"),
        spec.get("remote_ip_prefix"),
        spec.get("remote_group_id"),
        spec.get("description", ""),
    )


def actual(rule) -> tuple:
    return (
        rule.direction,
        rule.ethertype,
        rule.protocol,
        rule.port_range_min,
        rule.port_range_max,
        rule.remote_ip_prefix,
        rule.remote_group_id,
        rule.description,
    )


def assert_rule_shape(rule, group_id: str) -> None:
    assert UUID_RE.match(rule.id), f"rule id is not a UUID4: {rule.id!r}"
    assert rule.security_group_id == group_id
    assert isinstance(rule.revision_number, int)
    assert_recent(rule.created_at, "rule.created_at")
    assert_recent(rule.updated_at, "rule.updated_at")


def tags_of(group) -> dict:
    out = {}
    for tag in group.tags_v2:
        assert tag.read_only is False, f"unexpected read-only tag {tag!r}"
        out[tag.key] = tag.value
    return out


def all_groups(client, **filters) -> list:
    return list(client.cloud.security_groups.list(**filters))


def group_ids(client, **filters) -> set:
    groups = all_groups(client, **filters)
    ids = [g.id for g in groups]
    assert len(ids) == len(set(ids)), f"duplicate groups in listing: {ids}"
    return set(ids)


def default_template_ok(rules) -> None:
    """The default template (§5.1): egress IPv4 + egress IPv6, everything else null."""
    assert len(rules) == 2, [actual(r) for r in rules]
    assert sorted((r.direction, r.ethertype) for r in rules) == [("egress", "IPv4"), ("egress", "IPv6")]
    for r in rules:
        assert r.protocol is None
        assert r.port_range_min is None and r.port_range_max is None
        assert r.remote_ip_prefix is None
        assert r.remote_group_id is None
        assert r.description in ("", None)


def make_group(client, name: str, **kwargs):
    return client.cloud.security_groups.create_and_poll(name=name, **kwargs)


def task_ids(client, **filters) -> list:
    return [t.id for t in client.cloud.tasks.list(**filters)]


# ------------------------------------------------------------------------------------------
# create


def test_create_without_rules_applies_default_template(client, project_id):
    sg = make_group(client, "sg-default", description="first group")

    assert UUID_RE.match(sg.id), sg.id
    assert sg.name == "sg-default"
    assert sg.description == "first group"
    assert sg.project_id == project_id
    assert sg.region_id == REGION_ID
    assert isinstance(sg.region, str) and sg.region
    assert sg.revision_number == 0
    assert sg.tags_v2 == []
    assert_recent(sg.created_at, "created_at")
    assert_recent(sg.updated_at, "updated_at")
    default_template_ok(sg.security_group_rules)
    for rule in sg.security_group_rules:
        assert_rule_shape(rule, sg.id)
    assert len({r.id for r in sg.security_group_rules}) == 2


def test_create_with_empty_rules_creates_no_rules(client):
    sg = make_group(client, "sg-empty", rules=[])
    assert sg.name == "sg-empty"
    assert sg.description == ""
    assert sg.security_group_rules == []
    # a fresh GET agrees
    again = client.cloud.security_groups.get(sg.id)
    assert again.security_group_rules == []
    assert again.id == sg.id


def test_create_with_explicit_rules_and_tags(client, project_id):
    specs = [SSH, DNS6, EGRESS_ALL, {"direction": "egress", "protocol": "icmp", "ethertype": "IPv4"}]
    sg = make_group(client, "sg-explicit", description="explicit", rules=specs, tags={"env": "test", "team": "infra"})

    assert sg.project_id == project_id
    assert sg.description == "explicit"
    assert tags_of(sg) == {"env": "test", "team": "infra"}
    # exactly the rules that were sent, nothing appended (§5.1)
    assert Counter(actual(r) for r in sg.security_group_rules) == Counter(expected(s) for s in specs)
    for rule in sg.security_group_rules:
        assert_rule_shape(rule, sg.id)

    ssh = next(r for r in sg.security_group_rules if r.description == "ssh")
    assert (ssh.protocol, ssh.port_range_min, ssh.port_range_max) == ("tcp", 22, 22)
    assert ssh.remote_ip_prefix == "10.0.0.0/8"
    assert ssh.ethertype == "IPv4" and ssh.direction == "ingress"
    dns = next(r for r in sg.security_group_rules if r.ethertype == "IPv6")
    assert dns.remote_ip_prefix == "2001:db8::/32" and dns.protocol == "udp"


def test_create_task_and_wire_formats(client, project_id):
    """Raw create: one task, FINISHED with created_resources; timestamps in the contract's formats (§2)."""
    response = client.cloud.security_groups.create(name="sg-raw", rules=[SSH])
    assert len(response.tasks) == 1, response.tasks
    task = client.cloud.tasks.poll(response.tasks[0])
    assert task.state == "FINISHED"
    assert task.task_type == "create_security_group"
    assert task.created_resources is not None
    assert task.created_resources.security_groups is not None and len(task.created_resources.security_groups) == 1
    group_id = task.created_resources.security_groups[0]

    raw = client.cloud.security_groups.with_raw_response.get(group_id)
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    body = raw.json()
    for key in ("created_at", "updated_at"):
        assert SG_TIME_RE.match(body[key]), f"group {key}={body[key]!r} (want YYYY-MM-DDTHH:MM:SS+0000)"
    assert len(body["security_group_rules"]) == 1
    rule = body["security_group_rules"][0]
    for key in ("created_at", "updated_at"):
        assert SG_TIME_RE.match(rule[key]), f"rule {key}={rule[key]!r}"
    if task.created_resources.security_group_rules is not None:
        assert task.created_resources.security_group_rules == [rule["id"]]

    raw_task = client.cloud.tasks.with_raw_response.get(task.id).json()
    assert TASK_TIME_RE.match(raw_task["created_on"]), f"task created_on={raw_task['created_on']!r} (want naive)"
    assert TASK_TIME_RE.match(raw_task["finished_on"]), f"task finished_on={raw_task['finished_on']!r}"


# ------------------------------------------------------------------------------------------
# list


def test_list_auto_paging_over_three_pages(client):
    created = {make_group(client, f"page-{i}", rules=[]).id for i in range(7)}
    assert len(created) == 7

    first = client.cloud.security_groups.list(limit=3)
    assert first.count == 7
    assert len(first.results) == 3
    assert first.has_next_page()

    seen = [g.id for g in client.cloud.security_groups.list(limit=3)]
    assert len(seen) == 7, seen
    assert set(seen) == created

    last = client.cloud.security_groups.list(limit=3, offset=6)
    assert last.count == 7
    assert len(last.results) == 1
    assert not last.has_next_page()


def test_list_filters(client):
    alpha1 = make_group(client, "alpha", rules=[], tags={"env": "prod", "team": "a"})
    beta = make_group(client, "beta", rules=[], tags={"env": "dev"})
    alpha2 = make_group(client, "alpha", rules=[], tags={"team": "b"})
    gamma = make_group(client, "gamma", rules=[])

    assert group_ids(client) == {alpha1.id, beta.id, alpha2.id, gamma.id}
    # name: exact full-name match, duplicates allowed
    assert group_ids(client, name="alpha") == {alpha1.id, alpha2.id}
    assert group_ids(client, name="alph") == set()
    assert group_ids(client, name="gamma") == {gamma.id}
    # tag_key: every listed key must be present
    assert group_ids(client, tag_key=["env"]) == {alpha1.id, beta.id}
    assert group_ids(client, tag_key=["team"]) == {alpha1.id, alpha2.id}
    assert group_ids(client, tag_key=["env", "team"]) == {alpha1.id}
    assert group_ids(client, tag_key=["nope"]) == set()
    # tag_key_value: JSON object, every pair must match
    assert group_ids(client, tag_key_value=json.dumps({"env": "prod"})) == {alpha1.id}
    assert group_ids(client, tag_key_value=json.dumps({"env": "dev"})) == {beta.id}
    assert group_ids(client, tag_key_value=json.dumps({"env": "prod", "team": "a"})) == {alpha1.id}
    assert group_ids(client, tag_key_value=json.dumps({"env": "prod", "team": "b"})) == set()
    # combined
    assert group_ids(client, name="alpha", tag_key=["env"]) == {alpha1.id}
    page = client.cloud.security_groups.list(name="alpha", limit=1)
    assert page.count == 2 and len(page.results) == 1


def test_list_rejects_bad_query(client):
    with pytest.raises(gcore.BadRequestError) as exc:
        client.cloud.security_groups.list(tag_key_value="not json")
    assert exc.value.body["exception_class"] == "ValidationError"
    for bad_limit in (0, 1001):
        with pytest.raises(gcore.BadRequestError):
            client.cloud.security_groups.list(limit=bad_limit)


# ------------------------------------------------------------------------------------------
# update


def test_update_rename_and_description(client):
    sg = make_group(client, "before-rename", description="old")
    time.sleep(1.1)  # timestamps have whole seconds: make updated_at observably move

    response = client.cloud.security_groups.update(sg.id, name="after-rename", description="new")
    assert len(response.tasks) == 1
    task = client.cloud.tasks.poll(response.tasks[0])
    assert task.task_type == "update_security_group"
    assert task.state == "FINISHED"

    updated = client.cloud.security_groups.get(sg.id)
    assert updated.id == sg.id
    assert updated.name == "after-rename"
    assert updated.description == "new"
    assert updated.created_at == sg.created_at
    assert updated.updated_at > sg.updated_at
    assert updated.revision_number > sg.revision_number
    assert {r.id for r in updated.security_group_rules} == {r.id for r in sg.security_group_rules}

    # update_and_poll path of the SDK
    again = client.cloud.security_groups.update_and_poll(sg.id, name="third-name")
    assert again.name == "third-name" and again.description == "new"
    assert group_ids(client, name="third-name") == {sg.id}
    assert group_ids(client, name="before-rename") == set()


def test_update_rules_desired_state_diff(client):
    sg = make_group(client, "diffed", rules=[SSH, HTTP, EGRESS_ALL])
    by_key = {actual(r): r for r in sg.security_group_rules}
    old_ssh = by_key[expected(SSH)]
    old_http = by_key[expected(HTTP)]
    old_egress = by_key[expected(EGRESS_ALL)]
    https = {**HTTP, "port_range_min": 443, "port_range_max": 443, "description": "https"}

    # keep SSH, keep egress (sent with its defaults spelled out), drop HTTP, add HTTPS
    egress_explicit = {"direction": "egress", "ethertype": "IPv4", "protocol": None, "description": ""}
    updated = client.cloud.security_groups.update_and_poll(sg.id, rules=[SSH, egress_explicit, https])

    rules = {actual(r): r for r in updated.security_group_rules}
    assert set(rules) == {expected(SSH), expected(EGRESS_ALL), expected(https)}
    assert rules[expected(SSH)].id == old_ssh.id
    assert rules[expected(SSH)].created_at == old_ssh.created_at
    assert rules[expected(EGRESS_ALL)].id == old_egress.id
    new_https = rules[expected(https)]
    assert new_https.id not in {old_ssh.id, old_http.id, old_egress.id}
    assert_rule_shape(new_https, sg.id)
    assert old_http.id not in {r.id for r in updated.security_group_rules}
    assert updated.revision_number > sg.revision_number

    # the same desired state again is a no-op: no task
    noop = client.cloud.security_groups.update(sg.id, rules=[SSH, EGRESS_ALL, https])
    assert noop.tasks == []

    # rules: [] removes everything
    emptied = client.cloud.security_groups.update_and_poll(sg.id, rules=[])
    assert emptied.security_group_rules == []


def test_update_tags_merge_patch(client):
    sg = make_group(client, "tagged", rules=[], tags={"env": "test", "team": "infra", "keep": "yes"})
    assert tags_of(sg) == {"env": "test", "team": "infra", "keep": "yes"}

    # tags-only update: no task, applied immediately (§5.2, §5.3)
    response = client.cloud.security_groups.update(sg.id, tags={"env": "prod", "team": None, "new": "1"})
    assert response.tasks == []
    after = client.cloud.security_groups.get(sg.id)
    assert tags_of(after) == {"env": "prod", "keep": "yes", "new": "1"}
    assert after.name == "tagged"

    # deleting a key that does not exist is not an error
    response = client.cloud.security_groups.update(sg.id, tags={"ghost": None})
    assert response.tasks == []
    assert tags_of(client.cloud.security_groups.get(sg.id)) == {"env": "prod", "keep": "yes", "new": "1"}

    # the listing filters see the new tags
    assert group_ids(client, tag_key_value=json.dumps({"env": "prod"})) == {sg.id}
    assert group_ids(client, tag_key=["team"]) == set()

    # tags: null removes every user tag; update_and_poll handles the empty task list
    cleared = client.cloud.security_groups.update_and_poll(sg.id, tags=None)
    assert cleared.tags_v2 == []


def test_update_without_changes_returns_no_task(client):
    sg = make_group(client, "unchanged", description="same")
    assert client.cloud.security_groups.update(sg.id).tasks == []
    assert client.cloud.security_groups.update(sg.id, name="unchanged", description="same").tasks == []
    again = client.cloud.security_groups.get(sg.id)
    assert again.name == "unchanged" and again.description == "same"
    assert {r.id for r in again.security_group_rules} == {r.id for r in sg.security_group_rules}


# ------------------------------------------------------------------------------------------
# rules


def test_rule_create_and_delete_and_poll(client):
    sg = make_group(client, "rules-host", rules=[])

    https = ingress("tcp", 443, "0.0.0.0/0", "https")
    rule = client.cloud.security_groups.rules.create_and_poll(sg.id, **https)
    assert_rule_shape(rule, sg.id)
    assert actual(rule) == expected(https)
    group = client.cloud.security_groups.get(sg.id)
    assert [r.id for r in group.security_group_rules] == [rule.id]

    # raw create: exactly one task of the right type naming exactly the new rule
    response = client.cloud.security_groups.rules.create(sg.id, direction="egress", ethertype="IPv6")
    assert len(response.tasks) == 1
    task = client.cloud.tasks.poll(response.tasks[0])
    assert task.task_type == "create_security_group_rule"
    assert task.created_resources is not None
    assert task.created_resources.security_group_rules is not None
    assert len(task.created_resources.security_group_rules) == 1
    egress_id = task.created_resources.security_group_rules[0]
    group = client.cloud.security_groups.get(sg.id)
    assert {r.id for r in group.security_group_rules} == {rule.id, egress_id}
    egress = next(r for r in group.security_group_rules if r.id == egress_id)
    assert actual(egress) == ("egress", "IPv6", None, None, None, None, None, "")

    client.cloud.security_groups.rules.delete_and_poll(rule.id, group_id=sg.id)
    group = client.cloud.security_groups.get(sg.id)
    assert [r.id for r in group.security_group_rules] == [egress_id]

    response = client.cloud.security_groups.rules.delete(egress_id, group_id=sg.id)
    assert len(response.tasks) == 1
    task = client.cloud.tasks.poll(response.tasks[0])
    assert task.task_type == "delete_security_group_rule"
    assert client.cloud.security_groups.get(sg.id).security_group_rules == []

    # deleting a rule that is gone -> 404
    with pytest.raises(gcore.NotFoundError):
        client.cloud.security_groups.rules.delete(rule.id, group_id=sg.id)


def test_rule_replace_gives_new_id(client):
    sg = make_group(client, "replace-host", rules=[SSH, HTTP])
    old = next(r for r in sg.security_group_rules if r.description == "ssh")
    http_id = next(r.id for r in sg.security_group_rules if r.description == "http")

    ssh_alt = ingress("tcp", 2222, "192.168.0.0/16", "ssh alt")
    with pytest.warns(DeprecationWarning):
        new = client.cloud.security_groups.rules.replace(old.id, **ssh_alt)
    assert new.id != old.id
    assert_rule_shape(new, sg.id)
    assert actual(new) == expected(ssh_alt)

    group = client.cloud.security_groups.get(sg.id)
    assert {r.id for r in group.security_group_rules} == {new.id, http_id}

    # the old id is gone for good
    with pytest.warns(DeprecationWarning), pytest.raises(gcore.NotFoundError):
        client.cloud.security_groups.rules.replace(old.id, direction="egress")

    # protocol "any" is accepted on v1 inputs and comes back as null (§8.4)
    with pytest.warns(DeprecationWarning):
        anyproto = client.cloud.security_groups.rules.replace(new.id, direction="egress", protocol="any")
    assert anyproto.id not in {old.id, new.id}
    assert actual(anyproto) == ("egress", "IPv4", None, None, None, None, None, "")
    group = client.cloud.security_groups.get(sg.id)
    assert {r.id for r in group.security_group_rules} == {anyproto.id, http_id}


def test_copy_is_a_deep_copy(client):
    src = make_group(client, "original", description="copied description", rules=[SSH, DNS6], tags={"a": "1"})

    copy = client.cloud.security_groups.copy(src.id, name="the-copy")
    assert copy.id != src.id
    assert copy.name == "the-copy"
    assert copy.description == "copied description"
    assert copy.project_id == src.project_id and copy.region_id == src.region_id
    assert tags_of(copy) == {"a": "1"}
    assert len(copy.security_group_rules) == 2
    assert Counter(actual(r) for r in copy.security_group_rules) == Counter(actual(r) for r in src.security_group_rules)
    assert not ({r.id for r in copy.security_group_rules} & {r.id for r in src.security_group_rules})
    for rule in copy.security_group_rules:
        assert_rule_shape(rule, copy.id)

    # the copy is persisted and the source is untouched
    assert client.cloud.security_groups.get(copy.id).name == "the-copy"
    source = client.cloud.security_groups.get(src.id)
    assert {r.id for r in source.security_group_rules} == {r.id for r in src.security_group_rules}
    assert group_ids(client) == {src.id, copy.id}


def test_revert_to_default(client):
    sg = make_group(client, "revertme", description="keep me", rules=[SSH], tags={"k": "v"})
    old_ids = {r.id for r in sg.security_group_rules}

    reverted = client.cloud.security_groups.revert_to_default(sg.id)
    assert reverted.id == sg.id
    assert reverted.name == "revertme"
    assert reverted.description == "keep me"
    assert tags_of(reverted) == {"k": "v"}
    default_template_ok(reverted.security_group_rules)
    assert not ({r.id for r in reverted.security_group_rules} & old_ids)
    for rule in reverted.security_group_rules:
        assert_rule_shape(rule, sg.id)
    assert reverted.revision_number > sg.revision_number

    fetched = client.cloud.security_groups.get(sg.id)
    assert {r.id for r in fetched.security_group_rules} == {r.id for r in reverted.security_group_rules}


def test_delete_group(client):
    keep = make_group(client, "keeper", rules=[])
    sg = make_group(client, "doomed")
    rule_id = sg.security_group_rules[0].id

    assert client.cloud.security_groups.delete(sg.id) is None

    with pytest.raises(gcore.NotFoundError) as exc:
        client.cloud.security_groups.get(sg.id)
    assert exc.value.body["exception_class"] == "NotFoundError"
    assert group_ids(client) == {keep.id}
    with pytest.raises(gcore.NotFoundError):
        client.cloud.security_groups.delete(sg.id)
    with pytest.raises(gcore.NotFoundError):
        client.cloud.security_groups.rules.create(sg.id, direction="ingress")
    with pytest.raises(gcore.NotFoundError):
        client.cloud.security_groups.rules.delete(rule_id, group_id=sg.id)
    with pytest.raises(gcore.NotFoundError):
        client.cloud.security_groups.update(sg.id, name="zombie")
    with pytest.raises(gcore.NotFoundError):
        client.cloud.security_groups.copy(sg.id, name="zombie-copy")
    # a malformed id in the path is a 404 too (§8.15)
    with pytest.raises(gcore.NotFoundError):
        client.cloud.security_groups.get("not-a-uuid")


# ------------------------------------------------------------------------------------------
# tasks


def test_task_get_and_poll_fields(client, project_id):
    response = client.cloud.security_groups.create(name="task-fields", rules=[])
    (task_id,) = response.tasks

    fetched = client.cloud.tasks.get(task_id)
    assert fetched.id == task_id
    assert fetched.task_type == "create_security_group"
    assert fetched.state in ("NEW", "RUNNING", "FINISHED")

    task = client.cloud.tasks.poll(task_id)
    assert task.id == task_id
    assert task.state == "FINISHED"
    assert task.error is None
    assert task.project_id == project_id
    assert task.region_id == REGION_ID
    assert task.user_id == USER_ID
    assert task.client_id == CLIENT_ID
    assert task.acknowledged_at is None and task.acknowledged_by is None
    assert task.created_on and TASK_TIME_RE.match(task.created_on), task.created_on
    assert task.finished_on and TASK_TIME_RE.match(task.finished_on), task.finished_on
    assert task.created_resources is not None
    (group_id,) = task.created_resources.security_groups
    assert client.cloud.security_groups.get(group_id).name == "task-fields"

    with pytest.raises(gcore.NotFoundError):
        client.cloud.tasks.get("00000000-0000-4000-8000-000000000000")


def test_task_list_filters(client, project_id):
    start = now_utc()
    sg = make_group(client, "task-list", rules=[])
    time.sleep(0.05)
    rule = client.cloud.security_groups.rules.create_and_poll(sg.id, direction="ingress", protocol="tcp",
                                                              port_range_min=22, port_range_max=22)
    time.sleep(0.05)
    client.cloud.security_groups.update_and_poll(sg.id, name="task-list-2")
    end = now_utc()

    everything = task_ids(client, project_id=[project_id], order_by="asc")
    assert len(everything) == 3, everything
    create_id, rule_id_task, update_id = everything

    tasks = {t.id: t for t in client.cloud.tasks.list(project_id=[project_id])}
    assert tasks[create_id].task_type == "create_security_group"
    assert tasks[rule_id_task].task_type == "create_security_group_rule"
    assert tasks[rule_id_task].created_resources.security_group_rules == [rule.id]
    assert tasks[update_id].task_type == "update_security_group"

    # ordering (default desc)
    assert task_ids(client, project_id=[project_id], order_by="desc") == everything[::-1]
    assert task_ids(client, project_id=[project_id]) == everything[::-1]
    # paging
    page = client.cloud.tasks.list(project_id=[project_id], limit=2, order_by="asc")
    assert page.count == 3 and [t.id for t in page.results] == everything[:2]
    assert task_ids(client, project_id=[project_id], limit=2, order_by="asc") == everything
    # project / region filters
    assert task_ids(client, project_id=[next_project_id()]) == []
    assert set(task_ids(client, project_id=[project_id], region_id=[REGION_ID])) == set(everything)
    assert task_ids(client, project_id=[project_id], region_id=[REGION_ID + 1000]) == []
    # task_type
    assert task_ids(client, project_id=[project_id], task_type="create_security_group") == [create_id]
    assert task_ids(client, project_id=[project_id], task_type="update_security_group") == [update_id]
    assert task_ids(client, project_id=[project_id], task_type="task_type") == []
    # state
    assert set(task_ids(client, project_id=[project_id], state=["FINISHED"])) == set(everything)
    assert set(task_ids(client, project_id=[project_id], state=["ERROR", "FINISHED"])) == set(everything)
    assert task_ids(client, project_id=[project_id], state=["NEW", "RUNNING", "ERROR"]) == []
    # time window (created_on, UTC; datetimes and naive strings)
    assert set(task_ids(client, project_id=[project_id], from_timestamp=start - timedelta(seconds=2),
                        to_timestamp=end + timedelta(seconds=2))) == set(everything)
    assert task_ids(client, project_id=[project_id], from_timestamp=end + timedelta(minutes=5)) == []
    assert task_ids(client, project_id=[project_id], to_timestamp=start - timedelta(minutes=5)) == []
    naive_from = (start - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    assert set(task_ids(client, project_id=[project_id], from_timestamp=naive_from)) == set(everything)
    # acknowledgement filter
    assert set(task_ids(client, project_id=[project_id], is_acknowledged=False)) == set(everything)
    assert task_ids(client, project_id=[project_id], is_acknowledged=True) == []
    client.cloud.tasks.acknowledge_one(create_id)
    assert task_ids(client, project_id=[project_id], is_acknowledged=True) == [create_id]
    assert set(task_ids(client, project_id=[project_id], is_acknowledged=False)) == {rule_id_task, update_id}


def test_task_acknowledge_one(client, project_id):
    (task_id,) = client.cloud.security_groups.create(name="ack-one", rules=[]).tasks
    client.cloud.tasks.poll(task_id)

    acked = client.cloud.tasks.acknowledge_one(task_id)
    assert acked.id == task_id
    assert acked.acknowledged_by == USER_ID
    assert acked.acknowledged_at and TASK_TIME_RE.match(acked.acknowledged_at), acked.acknowledged_at
    fetched = client.cloud.tasks.get(task_id)
    assert fetched.acknowledged_by == USER_ID
    assert fetched.acknowledged_at == acked.acknowledged_at

    with pytest.raises(gcore.NotFoundError):
        client.cloud.tasks.acknowledge_one("00000000-0000-4000-8000-000000000000")


def test_task_acknowledge_all_with_project_filter(client, project_id):
    other_project = next_project_id()
    make_group(client, "ack-all-a", rules=[])
    make_group(client, "ack-all-a2", rules=[])
    make_group(client, "ack-all-b", rules=[], project_id=other_project)

    assert len(task_ids(client, project_id=[project_id], is_acknowledged=False)) == 2
    assert len(task_ids(client, project_id=[other_project], is_acknowledged=False)) == 1

    assert client.cloud.tasks.acknowledge_all(project_id=project_id) is None
    assert task_ids(client, project_id=[project_id], is_acknowledged=False) == []
    assert len(task_ids(client, project_id=[project_id], is_acknowledged=True)) == 2
    # the other project is untouched
    assert len(task_ids(client, project_id=[other_project], is_acknowledged=False)) == 1
    for task in client.cloud.tasks.list(project_id=[project_id]):
        assert task.acknowledged_by == USER_ID and task.acknowledged_at

    client.cloud.tasks.acknowledge_all(project_id=other_project, region_id=REGION_ID)
    assert task_ids(client, project_id=[other_project], is_acknowledged=False) == []


def test_semantic_errors_end_in_error_tasks(client, project_id):
    """v2 semantic failures are reported as task state ERROR, not HTTP errors (§5.9, §6.2)."""
    # port_range_min > port_range_max: the create task fails, nothing is created
    with pytest.raises(ValueError) as exc:
        make_group(client, "broken", rules=[{"direction": "ingress", "protocol": "tcp",
                                             "port_range_min": 90, "port_range_max": 80}])
    failed = list(client.cloud.tasks.list(project_id=[project_id], state=["ERROR"]))
    assert len(failed) == 1
    assert failed[0].task_type == "create_security_group"
    assert failed[0].error and str(exc.value) == failed[0].error
    assert failed[0].finished_on and TASK_TIME_RE.match(failed[0].finished_on)
    assert not (failed[0].created_resources and failed[0].created_resources.security_groups)
    assert client.cloud.security_groups.list().count == 0

    # a rule identical to an existing one: the rule task fails, the group is unchanged
    sg = make_group(client, "dupes", rules=[SSH])
    with pytest.raises(ValueError):
        client.cloud.security_groups.rules.create_and_poll(sg.id, **SSH)
    assert [r.id for r in client.cloud.security_groups.get(sg.id).security_group_rules] == [
        r.id for r in sg.security_group_rules
    ]
    failed = list(client.cloud.tasks.list(project_id=[project_id], state=["ERROR"], order_by="asc"))
    assert [t.task_type for t in failed] == ["create_security_group", "create_security_group_rule"]
    assert set(task_ids(client, project_id=[project_id], state=["FINISHED"])).isdisjoint(t.id for t in failed)


def test_single_port_sets_both_ends(client):
    """Only one of min/max given: the other is set to the same value (§5.9)."""
    sg = make_group(client, "one-port", rules=[{"direction": "ingress", "protocol": "tcp", "port_range_min": 8080}])
    (rule,) = sg.security_group_rules
    assert (rule.port_range_min, rule.port_range_max) == (8080, 8080)


def test_duplicate_rules_in_one_request_are_created_once(client):
    """§5.1: duplicate identical rules inside one request are created once."""
    sg = make_group(client, "dedupe", rules=[SSH, dict(SSH), EGRESS_ALL])
    assert Counter(actual(r) for r in sg.security_group_rules) == Counter([expected(SSH), expected(EGRESS_ALL)])


# ------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x"}, "name"),
        ({"name": "-starts-with-dash"}, "name"),
        ({"name": "ok-name", "rules": [{"direction": "sideways"}]}, None),
        ({"name": "ok-name", "rules": [{"direction": "ingress", "protocol": "tcp", "port_range_min": 70000,
                                        "port_range_max": 70000}]}, None),
        ({"name": "ok-name", "rules": [{"direction": "ingress", "remote_ip_prefix": "10.0.0.300/8"}]}, None),
        ({"name": "ok-name", "tags": {"bad=key": "v"}}, None),
    ],
    ids=["short-name", "dash-name", "bad-direction", "port-out-of-range", "bad-cidr", "bad-tag-key"],
)
def test_create_validation_error(client, project_id, body, field):
    before = client.cloud.security_groups.list().count
    tasks_before = client.cloud.tasks.list(project_id=[project_id]).count

    with pytest.raises(gcore.BadRequestError) as exc:
        client.cloud.security_groups.create(**body)
    error = exc.value
    assert error.status_code == 400
    assert isinstance(error.body, dict), error.body
    assert error.body["exception_class"] == "ValidationError"
    assert isinstance(error.body.get("message"), str) and error.body["message"]
    assert "invalid_fields" in error.body and error.body["invalid_fields"], error.body
    if field is not None:
        assert field in error.body["invalid_fields"], error.body["invalid_fields"]

    assert client.cloud.security_groups.list().count == before
    assert client.cloud.tasks.list(project_id=[project_id]).count == tasks_before


def test_update_validation_error_leaves_group_alone(client):
    sg = make_group(client, "valid-name", rules=[SSH])
    with pytest.raises(gcore.BadRequestError) as exc:
        client.cloud.security_groups.update(sg.id, name="x", rules=[])
    assert exc.value.body["exception_class"] == "ValidationError"
    assert "name" in exc.value.body["invalid_fields"]
    again = client.cloud.security_groups.get(sg.id)
    assert again.name == "valid-name"
    assert {r.id for r in again.security_group_rules} == {r.id for r in sg.security_group_rules}

    with pytest.raises(gcore.BadRequestError):
        client.cloud.security_groups.copy(sg.id, name="x")


def test_auth_scheme_is_case_insensitive(server):
    """§1.1: `apikey <token>` works as well as `APIKey <token>`; no header or a bad token is 401."""
    url = f"{server.base_url}/cloud/v1/securitygroups/{next_project_id()}/{REGION_ID}"
    for scheme in ("APIKey", "apikey", "APIKEY"):
        response = httpx.get(url, headers={"Authorization": f"{scheme} {server.api_key}"})
        assert response.status_code == 200, (scheme, response.text)
        assert response.json() == {"count": 0, "results": []}
    for headers in ({}, {"Authorization": "APIKey nope"}, {"Authorization": f"APIKey {server.api_key}x"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["exception_class"], response.text


def test_bad_api_key_is_401(server, recorder, project_id):
    from conftest import make_client

    bad = make_client(server, recorder, api_key="0$" + "0" * 64, project_id=project_id, strict=True)
    try:
        with pytest.raises(gcore.AuthenticationError):
            bad.cloud.security_groups.list()
        with pytest.raises(gcore.AuthenticationError):
            bad.cloud.tasks.list()
    finally:
        bad.close()


# ------------------------------------------------------------------------------------------
# isolation between clients


def test_other_client_cannot_touch_group_or_tasks(client, other_client, project_id):
    (task_id,) = client.cloud.security_groups.create(name="private", rules=[SSH], tags={"o": "1"}).tasks
    task = client.cloud.tasks.poll(task_id)
    (group_id,) = task.created_resources.security_groups
    sg = client.cloud.security_groups.get(group_id)
    rule_id = sg.security_group_rules[0].id

    groups = other_client.cloud.security_groups
    with pytest.raises(gcore.NotFoundError):
        groups.get(group_id)
    with pytest.raises(gcore.NotFoundError):
        groups.update(group_id, name="hijacked")
    with pytest.raises(gcore.NotFoundError):
        groups.update(group_id, tags={"o": None})
    with pytest.raises(gcore.NotFoundError):
        groups.delete(group_id)
    with pytest.raises(gcore.NotFoundError):
        groups.copy(group_id, name="stolen")
    with pytest.raises(gcore.NotFoundError):
        groups.revert_to_default(group_id)
    with pytest.raises(gcore.NotFoundError):
        groups.rules.create(group_id, direction="ingress")
    with pytest.raises(gcore.NotFoundError):
        groups.rules.delete(rule_id, group_id=group_id)
    with pytest.warns(DeprecationWarning), pytest.raises(gcore.NotFoundError):
        groups.rules.replace(rule_id, direction="egress")
    assert groups.list().count == 0
    assert groups.list(name="private").count == 0

    tasks = other_client.cloud.tasks
    with pytest.raises(gcore.NotFoundError):
        tasks.get(task_id)
    with pytest.raises(gcore.NotFoundError):
        tasks.acknowledge_one(task_id)
    assert tasks.list(project_id=[project_id]).count == 0
    tasks.acknowledge_all(project_id=project_id)
    tasks.acknowledge_all()

    # client 1 sees everything unchanged
    after = client.cloud.security_groups.get(group_id)
    assert after.name == "private"
    assert tags_of(after) == {"o": "1"}
    assert [r.id for r in after.security_group_rules] == [rule_id]
    assert client.cloud.tasks.get(task_id).acknowledged_at is None
    assert client.cloud.security_groups.list().count == 1
