"""Local endpoints suspend when idle and resume on the next connection, as Neon computes do."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from localcloud.neon import ControlPlane

pytestmark = pytest.mark.timeout(120)


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def plane(monkeypatch: pytest.MonkeyPatch) -> Iterator[ControlPlane]:
    monkeypatch.setenv("FORKSTAGE_LOCAL_SUSPEND_AFTER", "1s")
    home = Path(tempfile.mkdtemp(prefix="fs-suspend-"))
    home.chmod(0o711)  # PostgreSQL may run as the postgres user: it must traverse to its data
    cp = ControlPlane(home)
    try:
        yield cp
    finally:
        cp.stop_all()
        assert cp.computes.proxy is not None and cp.computes.proxy.pid() is None
        shutil.rmtree(home, ignore_errors=True)


def test_idle_endpoint_suspends_and_resumes_on_connect_within_a_second(
    plane: ControlPlane,
) -> None:
    project = plane.create_project(name="p")
    branch = project.default_branch_id
    url = plane.branch_url(project.id, branch)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("INSERT INTO t VALUES ('kept')")
        time.sleep(2.5)  # an open session keeps the endpoint up
        assert plane.computes.running_port(branch) is not None
    assert wait_for(lambda: plane.computes.running_port(branch) is None, 10), "not suspended"
    endpoint = plane.get_endpoint(project.id, project.default_endpoint_id)
    assert accepts(endpoint.port)  # the address stays served while suspended

    started = time.monotonic()
    with psycopg.connect(url, connect_timeout=10) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]
    took = time.monotonic() - started
    assert took < 1.0, f"resumed in {took:.2f} s"
    assert plane.branch_url(project.id, branch) == url  # same address before and after

    # a fork of a suspended parent is a copy of its files; the child gets its own address
    child = plane.create_branch(project.id, name="pr-1")
    child_endpoint = plane.create_endpoint(project.id, child.id)
    child_url = plane.branch_url(project.id, child.id)
    with psycopg.connect(child_url) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]
    plane.delete_branch(project.id, child.id)
    assert not accepts(child_endpoint.port)  # released with the endpoint, at once
    assert set(plane.computes.proxy.serves()) == {project.default_endpoint_id}  # type: ignore[union-attr]


def test_suspend_after_setting(tmp_path: Path) -> None:
    from cdk.settings import SettingsError, load_settings
    from localcloud.endpoint_proxy import DEFAULT_SUSPEND_AFTER, suspend_after

    (tmp_path / "forkstage.toml").write_text('[app]\nname = "shop"\n')
    assert load_settings(tmp_path, environ={}).local_suspend_after == DEFAULT_SUSPEND_AFTER
    (tmp_path / "forkstage.toml").write_text('[app]\nname = "shop"\n[local]\nsuspend_after = 60\n')
    assert load_settings(tmp_path, environ={}).local_suspend_after == 60
    (tmp_path / "forkstage.toml").write_text('[app]\nname = "shop"\n[local]\nsuspend_after = -1\n')
    with pytest.raises(SettingsError, match=r"local.suspend_after must be 0 \(never\)"):
        load_settings(tmp_path, environ={})
    assert suspend_after({"FORKSTAGE_LOCAL_SUSPEND_AFTER": "60"}) == 60
    assert suspend_after({"FORKSTAGE_LOCAL_SUSPEND_AFTER": "2m"}) == 120
    assert suspend_after({}) == DEFAULT_SUSPEND_AFTER
