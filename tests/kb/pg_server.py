"""Start a throw-away PostgreSQL server for the integration test (loopback only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PG_USER = "edgewise"
SYSTEM_USER = "edgewise-pg"


def find_pg_bin() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres, or None if PostgreSQL is absent."""
    candidates: list[Path] = []
    found = shutil.which("postgres") or shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).resolve().parent)
    candidates.append(Path("/usr/local/bin"))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for directory in candidates:
        if all((directory / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            # initdb finds postgres next to its own (resolved) executable.
            return (directory / "initdb").resolve().parent
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[list[str], int | None, int | None]:
    """Command prefix and uid/gid to run PostgreSQL unprivileged (it refuses root)."""
    if os.geteuid() != 0:
        return [], None, None
    import pwd

    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return ["runuser", "-u", SYSTEM_USER, "--"], entry.pw_uid, entry.pw_gid


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[str]:
    """Run a PostgreSQL server on 127.0.0.1 at a free port; yield its base URL.

    The cluster lives in a temporary directory owned by the unprivileged user and is
    removed afterwards; the server is stopped in a ``finally``.
    """
    prefix, uid, gid = _run_as()
    root = Path(tempfile.mkdtemp(prefix="edgewise-pg-", dir="/tmp"))
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    data = root / "data"
    log = root / "server.log"
    port = _free_port()
    started = False
    try:
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            cwd=root,
            timeout=120,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c fsync=off "
            f"-c unix_socket_directories='{root}' -c full_page_writes=off"
        )
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            cwd=root,
            timeout=90,
        )
        started = True
        yield f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}"
    except subprocess.CalledProcessError as err:
        detail = (err.stderr or b"").decode(errors="replace").strip()
        if log.exists():
            detail += "\n" + log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL failed: {err.cmd}: {detail}") from err
    finally:
        if started:
            subprocess.run(
                [
                    *prefix,
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                cwd=root,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)
