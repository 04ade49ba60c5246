"""Choosing the ingress: the config checks the name; a session sets and restores the env."""

from __future__ import annotations

import os

import pytest

from edgewise.errors import SpecError
from edgewise.serving.runtime import RuntimeConfig
from edgewise.serving.runtime.app import RaySession, haproxy_enabled


def test_unknown_ingress_is_one_clear_line() -> None:
    with pytest.raises(SpecError, match=r"unknown ingress 'nginx'; known: proxy, haproxy"):
        RuntimeConfig(model="digits_cnn", ingress="nginx")
    assert RuntimeConfig(model="digits_cnn").ingress == "proxy"


def test_haproxy_session_sets_free_ports_and_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_STATS_PORT", "8404")
    session = RaySession(ingress="haproxy")
    session._set_ingress_env()
    assert haproxy_enabled()
    stats = int(os.environ["RAY_SERVE_HAPROXY_STATS_PORT"])
    metrics = int(os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"])
    assert stats != 8404 and 1024 < stats < 65536 and 1024 < metrics < 65536
    session._restore_env()
    assert not haproxy_enabled()
    assert os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] == "8404"
    assert "RAY_SERVE_HAPROXY_METRICS_PORT" not in os.environ


def test_proxy_session_turns_a_stray_haproxy_flag_off(monkeypatch: pytest.MonkeyPatch) -> None:
    # The config decides the ingress, not whatever the shell exported.
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    session = RaySession()
    session._set_ingress_env()
    assert not haproxy_enabled()
    session._restore_env()
    assert haproxy_enabled()


def test_loopback_node_sets_and_restores_rays_local_only_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ray._private import ray_constants, services

    from edgewise.rayenv import LOCAL_ONLY_ENV, loopback_node

    monkeypatch.delenv(LOCAL_ONLY_ENV, raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    with loopback_node():
        assert os.environ[LOCAL_ONLY_ENV] == "0"  # inherited by the processes Ray starts
        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
    assert LOCAL_ONLY_ENV not in os.environ
    assert before == ray_constants.ENABLE_RAY_CLUSTER
