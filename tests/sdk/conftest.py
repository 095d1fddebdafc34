"""Fixtures for the Palisade acceptance tests that drive the official `gcore` Python SDK.

A single `palisade serve` process is started per test session on a free port with a fresh
SQLite data directory. Two API keys are created before the server starts: one for client 1 /
user 1 (used by every test) and one for client 2 / user 2 (used only by the isolation tests).

Every test gets its own project id, so tests never see each other's security groups or tasks.
The `client` fixture is parametrized over the SDK's loose (default) and strict
(`_strict_response_validation=True`) response validation modes.

When a test fails, the last HTTP exchanges it made are attached to the report (section
"palisade http"), so a failure can be traced to the exact server response.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List

import gcore
import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION_ID = 1
CLIENT_ID = 1
USER_ID = 1
OTHER_CLIENT_ID = 2
OTHER_USER_ID = 2

# Task polling: 1 s is the SDK minimum; the timeout only guards against a task that never ends.
POLL_INTERVAL_SECONDS = 1
POLL_TIMEOUT_SECONDS = 30

_project_ids = itertools.count(100)


def next_project_id() -> int:
    """A project id no other test in this session uses."""
    return next(_project_ids)


@dataclass
class Server:
    base_url: str
    api_key: str
    other_api_key: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no server log>"
        return "\n".join(text.splitlines()[-lines:])


def _binary() -> Path:
    path = Path(os.environ.get("PALISADE_BIN") or REPO_ROOT / "target" / "debug" / "palisade")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.exit(
            f"palisade binary not found at {path}; build it (cargo build -p palisade) or set PALISADE_BIN",
            returncode=2,
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _create_key(binary: Path, data_dir: Path, client_id: int, user_id: int, name: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALISADE_")}
    result = subprocess.run(
        [
            str(binary),
            "keys",
            "create",
            "--data-dir",
            str(data_dir),
            "--client-id",
            str(client_id),
            "--user-id",
            str(user_id),
            "--name",
            name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    if result.returncode != 0:
        pytest.exit(
            f"`palisade keys create` failed ({result.returncode}):\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}",
            returncode=2,
        )
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    if not lines or "$" not in lines[-1]:
        pytest.exit(f"`palisade keys create` printed no token:\n{result.stdout}", returncode=2)
    return lines[-1]


def _wait_healthy(base_url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.exit(
                f"palisade serve exited with {process.returncode} before becoming healthy:\n"
                + log_path.read_text(errors="replace"),
                returncode=2,
            )
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
                last_error = f"status {response.status}"
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last_error = repr(exc)
        time.sleep(0.1)
    process.terminate()
    pytest.exit(f"palisade serve did not become healthy in {timeout}s ({last_error}):\n" + log_path.read_text(errors="replace"), returncode=2)


def _run_server(extra_args: List[str]) -> Iterator[Server]:
    """Starts `palisade serve` on a fresh data dir with two client keys; stops it afterwards."""
    binary = _binary()
    data_dir = Path(tempfile.mkdtemp(prefix="palisade-sdk-"))
    api_key = _create_key(binary, data_dir, CLIENT_ID, USER_ID, "sdk-tests")
    other_api_key = _create_key(binary, data_dir, OTHER_CLIENT_ID, OTHER_USER_ID, "sdk-tests-other")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "serve.log"
    log_file = open(log_path, "wb")
    # Hermetic: no PALISADE_* setting from the caller's shell (config file, database URL, ...)
    # may point the server somewhere else than the fresh data dir.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALISADE_")}
    env.setdefault("RUST_LOG", "info")
    process = subprocess.Popen(
        [str(binary), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir), *extra_args],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
    )
    srv = Server(base_url, api_key, other_api_key, data_dir, log_path, process)
    try:
        _wait_healthy(base_url, process, log_path)
        yield srv
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log_file.close()
        if os.environ.get("PALISADE_KEEP_DATA"):
            print(f"\npalisade data dir kept at {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    yield from _run_server([])


@pytest.fixture(scope="module")
def limited_server() -> Iterator[Server]:
    """A server whose per-key rate limits a burst of SDK calls runs into at once."""
    yield from _run_server(["--rate-limit-writes", "2", "--rate-limit-reads", "5"])


# --------------------------------------------------------------------------------------------
# HTTP exchange recording (attached to failing test reports)


@dataclass
class Exchange:
    method: str
    url: str
    request_body: str
    status: int
    headers: dict
    response_body: str

    def render(self) -> str:
        ctype = self.headers.get("content-type", "")
        return (
            f"> {self.method} {self.url}\n"
            + (f"> {self.request_body}\n" if self.request_body else "")
            + f"< {self.status} content-type={ctype!r}\n"
            + (f"< {self.response_body}\n" if self.response_body else "")
        )


class Recorder:
    def __init__(self) -> None:
        self.exchanges: List[Exchange] = []

    def hook(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        try:
            body = request.content.decode(errors="replace")
        except httpx.RequestNotRead:
            body = "<streamed>"
        self.exchanges.append(
            Exchange(
                method=request.method,
                url=str(request.url),
                request_body=body[:2000],
                status=response.status_code,
                headers=dict(response.headers),
                response_body=response.text[:4000],
            )
        )


@pytest.fixture
def recorder(request) -> Recorder:
    rec = Recorder()
    request.node._palisade_recorder = rec
    return rec


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        rec = getattr(item, "_palisade_recorder", None)
        if rec is not None and rec.exchanges:
            text = "\n".join(exchange.render() for exchange in rec.exchanges[-12:])
            report.sections.append(("palisade http (last exchanges)", text))


# --------------------------------------------------------------------------------------------
# Clients


def make_client(server: Server, recorder: Recorder, *, api_key: str, project_id: int, strict: bool) -> gcore.Gcore:
    http_client = gcore.DefaultHttpxClient(event_hooks={"response": [recorder.hook]})
    return gcore.Gcore(
        api_key=api_key,
        base_url=server.base_url,
        cloud_project_id=project_id,
        cloud_region_id=REGION_ID,
        polling_interval_seconds=POLL_INTERVAL_SECONDS,
        polling_timeout_seconds=POLL_TIMEOUT_SECONDS,
        # No retries: a 5xx/409 must surface as a failure instead of being silently re-sent.
        max_retries=0,
        timeout=30.0,
        http_client=http_client,
        _strict_response_validation=strict,
    )


@pytest.fixture
def project_id() -> int:
    return next_project_id()


@pytest.fixture(params=["loose", "strict"])
def client(request, server: Server, recorder: Recorder, project_id: int) -> Iterator[gcore.Gcore]:
    c = make_client(server, recorder, api_key=server.api_key, project_id=project_id, strict=request.param == "strict")
    yield c
    c.close()


@pytest.fixture
def other_client(client: gcore.Gcore, server: Server, recorder: Recorder, project_id: int) -> Iterator[gcore.Gcore]:
    """Client 2's key, pointed at the SAME project id as `client`."""
    c = make_client(
        server,
        recorder,
        api_key=server.other_api_key,
        project_id=project_id,
        strict=client._strict_response_validation,
    )
    yield c
    c.close()


def dump(value) -> str:
    return json.dumps(value, indent=None, default=str)
