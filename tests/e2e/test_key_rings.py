"""Key rings generated on a fresh data directory must be one ring, whatever process serves a request.

granian runs several gateway processes. Left to themselves, each generated its own signing and credential
ring on first start (none existed yet): a token signed by one was refused by the others, at random.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import TestDatabase
from tests.e2e.conftest import make_tenant, running_gateway


def test_a_fresh_data_dir_gives_every_gateway_process_the_same_key_rings(
    test_db: TestDatabase, tmp_path: Path
) -> None:
    for start in range(3):  # the race took about one fresh start in ten
        data_dir = tmp_path / f"var{start}"
        data_dir.mkdir()
        with running_gateway(test_db, data_dir, FILEGATE_WORKERS="2") as server:
            tenant = make_tenant(server)
            headers = {"Authorization": f"Bearer {tenant.access_token}"}
            # A new connection each time: granian hands connections to its processes in turn.
            answers = [httpx.get(f"{server.url}/v1/me", headers=headers).status_code for _ in range(20)]
        assert answers == [200] * 20, answers
