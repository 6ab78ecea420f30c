"""Whose registry credentials a call uses: the session owner's Docker config when the caller
set one, never another user's token."""

from __future__ import annotations

from pathlib import Path

from dirk.workers.images.auth import (
    Credentials,
    DockerConfig,
    active_docker_config,
    docker_config_of,
    using_docker_config,
)


def test_a_users_config_is_its_clients_docker_config_else_its_home() -> None:
    assert docker_config_of(0, {"DOCKER_CONFIG": "/cfg"}) == Path("/cfg/config.json")
    assert docker_config_of(0, {}) == Path("/root/.docker/config.json")
    assert docker_config_of(2**31 - 7, {}) is None  # no such user: no home


def test_the_config_set_for_a_block_is_the_one_calls_see() -> None:
    mine = DockerConfig(Path("/home/a/.docker/config.json"))
    assert active_docker_config() is None
    with using_docker_config(mine):
        assert active_docker_config() is mine
        with using_docker_config(None):  # None keeps what is set
            assert active_docker_config() is mine
    assert active_docker_config() is None


def test_identities_tell_credentials_apart_and_anonymous_is_empty() -> None:
    alice = DockerConfig(Path("a"), auths=(("r.example", Credentials("alice", "pw")),))
    other = DockerConfig(Path("b"), auths=(("r.example", Credentials("alice", "other")),))
    assert alice.identity("r.example") != other.identity("r.example")
    assert alice.identity("r.example") == DockerConfig(Path("c"), alice.auths).identity("r.example")
    assert alice.identity("elsewhere.example") == ""
    assert "pw" not in alice.identity("r.example")
