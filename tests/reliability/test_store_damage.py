"""A broken store, for real: ``tallygate serve`` on SQLite files damaged in real ways (garbage
header, truncation, a page overwritten, a ``-wal`` without its database), on PostgreSQL that
cannot be used, and on a file deleted, replaced or damaged under the running process.

A store that cannot be opened stops the start with one line that says what is wrong and what
to do (no traceback, non-zero exit). A store that breaks while serving takes the gateway out
of service: requests are refused with 503 before anything is forwarded upstream, ``/readyz``
answers 503, and the log says why once.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from proxy.simulator import SimulatorServer
from tests.reliability.clients import Seen, chat
from tests.reliability.support import (
    ADMIN_KEY,
    TALLYGATE,
    ServedGateway,
    child_env,
    served_gateway,
    until,
)
from tests.support.postgres import PG_URL, require_postgres, schema_url
from tests.support.sqlite_files import overwrite, root_page

pytestmark = pytest.mark.slow

#: What the log says once when a running gateway finds its store broken.
BROKEN_LINE = "usage store broken"


def garbage_header(db: Path) -> None:
    overwrite(db, 0, b"this is not the SQLite header " * 4)


def truncated(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def garbage_file(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


def page_only_writes_touch(db: Path) -> None:
    """The idempotency index of events: every usage write goes through it, reads never do."""
    offset, size = root_page(db, "sqlite_autoindex_events_1")
    overwrite(db, offset, os.urandom(size))


def lone_wal(db: Path) -> None:
    """The database gone, its write-ahead log left behind (holding a commit)."""
    conn = sqlite3.connect(db, isolation_level=None)
    wal = db.with_name(db.name + "-wal")
    kept = db.with_name("kept-wal")
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("UPDATE customers SET created_us = created_us + 1")
        shutil.copy(wal, kept)
    finally:
        conn.close()
    db.unlink()
    kept.replace(wal)


def serve_until_exit(gateway: ServedGateway) -> subprocess.CompletedProcess[str]:
    """Run ``tallygate serve`` expecting it not to start; what it printed and its status."""
    return subprocess.run(
        [TALLYGATE, "--config", str(gateway.config), "serve"],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=gateway.config.parent,
        timeout=60,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The run failed, printed no traceback, and exactly one line holding every needle."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if all(n in line for n in needles)]
    assert len(lines) == 1, output
    return lines[0]


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage header": (garbage_header, "is damaged (file is not a database)"),
    "truncated": (truncated, "is damaged"),
    "garbage file": (garbage_file, "is damaged"),
    "page only writes touch": (page_only_writes_touch, "is damaged (integrity check"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_a_damaged_file_stops_the_start_with_one_line(
    tmp_path: Path, simulator: SimulatorServer, kind: str
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url)
    gateway.create_key()  # the file, with its schema, a customer and a key
    damage, said = DAMAGE[kind]
    damage(gateway.db)
    line = assert_one_line(serve_until_exit(gateway), said)
    assert str(gateway.db) in line
    assert "restore the file from a backup" in line  # what to do
    assert simulator.control.stats()["total_requests"] == 0


def test_a_write_ahead_log_without_its_database_stops_the_start(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url)
    gateway.create_key()
    lone_wal(gateway.db)
    line = assert_one_line(serve_until_exit(gateway), "exists but the database")
    assert "Put the database file back" in line
    assert not gateway.db.exists()  # no empty database was made beside the orphan log


def test_key_commands_on_a_damaged_file_say_so_in_one_line(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url)
    gateway.create_key()
    garbage_header(gateway.db)
    done = subprocess.run(
        [TALLYGATE, "--config", str(gateway.config), "keys", "list"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert_one_line(done, "tallygate: cannot open the store", "is damaged")


async def test_with_the_check_off_damage_found_by_a_write_takes_the_gateway_out_of_service(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    gateway = served_gateway(
        tmp_path,
        simulator.base_url,
        server={"shutdown_grace_seconds": 1},
        store={"check_integrity_at_start": False},
    )
    key = gateway.create_key()
    page_only_writes_touch(gateway.db)
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            assert (await client.get("/readyz")).status_code == 200  # reads do not meet it
            # Too late for this one: the damage shows when its usage is written. A broken
            # store is not retried: the client keeps the answer its tokens were spent on, and
            # its usage is reported as not stored, with its events for a replay.
            first = await chat(client, key, stream=False)
            assert first.status == 200
            assert first.complete
            await until(lambda: not_ready(client))
            assert simulator.control.stats()["total_requests"] == 1
            await assert_refused_before_upstream(client, key, simulator)
    finally:
        gateway.stop()
    log = gateway.log()
    assert log.count(BROKEN_LINE) == 1, log
    unwritten = [line for line in log.splitlines() if "usage not stored (" in line]
    assert len(unwritten) == 1, log
    assert f"request {first.request_id}" in unwritten[0]
    assert f"{first.request_id}:input" in unwritten[0]  # its events, ready to replay


async def not_ready(client: httpx.AsyncClient) -> bool:
    response = await client.get("/readyz")
    return response.status_code == 503 and response.json()["status"] == "store broken"


def assert_broken_store_refusal(seen: Seen) -> None:
    assert seen.status == 503
    assert seen.body["error"]["code"] == "store_unavailable"
    assert seen.body["error"]["type"] == "server_error"
    assert "out of service" in seen.body["error"]["message"]
    assert "retry-after" in seen.headers


async def assert_refused_before_upstream(
    client: httpx.AsyncClient, key: str, simulator: SimulatorServer
) -> None:
    """Chats (plain and streamed) are refused with 503 and nothing reaches the upstream."""
    forwarded = simulator.control.stats()["total_requests"]
    for stream in (False, True, False):
        assert_broken_store_refusal(await chat(client, key, stream=stream))
    assert simulator.control.stats()["total_requests"] == forwarded


def delete(db: Path) -> None:
    db.unlink()


def replace(db: Path) -> None:
    copy = db.with_name("copy.db")
    shutil.copy(db, copy)
    copy.replace(db)


def damage_the_keys(db: Path) -> None:
    """The keys' table (read when a key is first seen), overwritten under the process."""
    offset, size = root_page(db, "api_keys")
    overwrite(db, offset, os.urandom(size))


LIVE: dict[str, tuple[Callable[[Path], None], bool]] = {
    # name: (damage, whether a request is served before it)
    "deleted": (delete, True),
    "replaced": (replace, True),
    "page damaged": (damage_the_keys, False),
}


@pytest.mark.parametrize("kind", sorted(LIVE))
async def test_a_store_broken_under_the_running_gateway_refuses_before_the_upstream(
    tmp_path: Path, simulator: SimulatorServer, kind: str
) -> None:
    gateway = served_gateway(tmp_path, simulator.base_url)
    key = gateway.create_key()
    damage, serve_first = LIVE[kind]
    gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            if serve_first:
                assert (await chat(client, key, stream=False)).status == 200
            damage(gateway.db)
            await assert_refused_before_upstream(client, key, simulator)
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (503, {"status": "store broken"})
            usage = await client.get("/v1/usage", headers={"Authorization": f"Bearer {key}"})
            assert usage.status_code == 503
            assert usage.json()["error"]["code"] == "store_unavailable"
            lago = await client.get(
                "/api/v1/customers/acme", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            )
            assert lago.status_code == 503
            assert lago.json()["code"] == "store_unavailable"  # Lago's envelope
            assert lago.json()["status"] == 503
        gateway.signal(signal.SIGTERM)
        assert gateway.wait() == 0
    finally:
        gateway.stop()
    log = gateway.log()
    assert log.count(BROKEN_LINE) == 1, log
    assert "Traceback" not in log
    line = next(line for line in log.splitlines() if BROKEN_LINE in line)
    assert str(gateway.db) in line


def postgres_with(url: str, tmp_path: Path, simulator: SimulatorServer) -> ServedGateway:
    return served_gateway(tmp_path, simulator.base_url, store={"url": url})


def test_an_unreachable_postgresql_stops_the_start_with_one_line(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    # Port 1 on loopback: closed. The password must not be printed.
    url = "postgresql://tally:s3cret-pw@127.0.0.1:1/billing"
    done = serve_until_exit(postgres_with(url, tmp_path, simulator))
    line = assert_one_line(done, "cannot open the store")
    assert "127.0.0.1:1/billing" in line
    assert "check that it is reachable" in line
    assert "s3cret-pw" not in done.stdout + done.stderr


async def test_a_refused_postgresql_login_stops_the_start_with_one_line(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    await require_postgres()
    parts = urlsplit(PG_URL)
    role = f"tg_no_such_role_{uuid.uuid4().hex[:8]}"
    netloc = f"{role}:pw@{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit(parts._replace(netloc=netloc))
    done = serve_until_exit(postgres_with(url, tmp_path, simulator))
    line = assert_one_line(done, "cannot open the store", "postgresql refused")
    assert role in line


async def test_a_postgresql_schema_that_cannot_be_created_stops_the_start_with_one_line(
    tmp_path: Path, simulator: SimulatorServer
) -> None:
    await require_postgres()
    schema = f"pg_tallygate_{uuid.uuid4().hex[:8]}"  # pg_ names are the system's
    done = serve_until_exit(postgres_with(schema_url(schema), tmp_path, simulator))
    line = assert_one_line(done, "cannot open the store", f"the schema {schema}")
    assert "cannot be created" in line
    assert "CREATE SCHEMA" in line
