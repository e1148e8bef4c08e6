"""``--poll-interval`` with ``--workers``: one poller (the supervisor's) reloads every worker."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from shipyard.testing import add_sub_model, wait_until_blocking, write_model
from tests.workers.serving import serve_workers


def _versions(connection: http.client.HTTPConnection) -> list[str]:
    connection.request("GET", "/v2/models/simple")
    answer = connection.getresponse()
    body = answer.read()
    return list(json.loads(body)["versions"]) if answer.status == 200 else []


def test_a_new_version_on_disk_reaches_every_worker_once(tmp_path: Path) -> None:
    """A version published while serving is loaded by both workers, by one poller."""
    repository = tmp_path / "repo"
    write_model(repository, "simple", add_sub_model())
    with serve_workers(repository, 2, "--poll-interval", "0.1", grpc=False) as server:
        connections = [server.connection_on(pid) for pid in server.worker_pids()]
        try:
            assert [_versions(c) for c in connections] == [["1"], ["1"]]
            write_model(repository, "simple", add_sub_model(), version=2)
            wait_until_blocking(
                lambda: all("2" in _versions(c) for c in connections),
                "version 2 in every worker",
                60,
            )
        finally:
            for connection in connections:
                connection.close()
        _, stderr = server.output()
    reloads = [line for line in stderr.splitlines() if "model simple changed on disk" in line]
    assert len(reloads) == 1, stderr  # the supervisor's poller, not one per worker
    assert " worker " not in reloads[0]
