"""Per-key rate limits as the official SDK meets them: 429 with Retry-After, which the SDK's
own retries wait out, so a burst ends in success (issue "Hold under abuse")."""

from __future__ import annotations

import gcore
import httpx

from conftest import REGION_ID, Recorder, next_project_id


def test_a_burst_through_the_sdk_ends_in_success_through_its_retries(limited_server, recorder: Recorder):
    statuses: list[int] = []

    def note(response: httpx.Response) -> None:
        statuses.append(response.status_code)
        recorder.hook(response)

    client = gcore.Gcore(
        api_key=limited_server.api_key,
        base_url=limited_server.base_url,
        cloud_project_id=next_project_id(),
        cloud_region_id=REGION_ID,
        polling_interval_seconds=1,
        polling_timeout_seconds=60,
        max_retries=5,
        timeout=30.0,
        http_client=gcore.DefaultHttpxClient(event_hooks={"response": [note]}),
    )
    try:
        names = [f"burst-{i}" for i in range(10)]
        for name in names:
            client.cloud.security_groups.create_and_poll(name=name, rules=[])
        created = {group.name for group in client.cloud.security_groups.list(limit=100)}
    finally:
        client.close()
    assert set(names) <= created
    # The limit really was met (2 writes/s, bursts of 4, for 10 writes in a loop), and every
    # refusal was retried: nothing but 429s and successes.
    assert statuses.count(429) >= 1, statuses
    assert set(statuses) <= {200, 429}, statuses
