"""Joining a Ray instance on this machine: loopback addresses and a bounded reachability check."""

from __future__ import annotations

import socket
import time

import pytest

from edgewise.rayenv import check_reachable, is_loopback_address


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:6379", True),
        ("127.0.1.1:41000", True),
        ("localhost:6379", True),
        ("[::1]:6379", True),
        ("192.0.2.2:6379", False),
        ("10.0.0.5:6379", False),
        ("auto", False),
        ("ray://127.0.0.1:10001", False),
        ("127.0.0.1", False),
    ],
)
def test_loopback_addresses_are_recognised(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback


def test_a_listening_port_is_reachable() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}", 2.0)


def test_a_closed_port_fails_at_once_naming_the_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}", 2.0)
    assert time.monotonic() - t0 < 2.0


def test_other_address_forms_are_not_checked() -> None:
    check_reachable("auto", 0.1)
    check_reachable("ray://nowhere.invalid:10001", 0.1)
