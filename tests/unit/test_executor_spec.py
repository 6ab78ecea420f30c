"""The OCI config the executor writes: Docker's defaults, the caller's choices, nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dirk.workers.executor.spec import (
    ALL_CAPABILITIES,
    CA_BUNDLE_PATH,
    DEFAULT_PATH,
    DOCKER_CAPABILITIES,
    BindMount,
    ContainerSpec,
    HostFiles,
    ResolvedUser,
    TmpfsMount,
    build_config,
    capabilities_of_mask,
    stub_paths,
)

FILES = HostFiles(Path("/b/resolv.conf"), Path("/b/hostname"), Path("/b/hosts"))


ROOT = ResolvedUser()


def config(spec: ContainerSpec, user: ResolvedUser = ROOT, **kw: Any) -> dict[str, Any]:
    files = kw.pop("files", FILES)
    args: dict[str, Any] = {"netns": "/run/netns/x", "nofile": 20000, "cgroups_path": "/dirk/c"}
    args.update(kw)
    return build_config(spec, Path("/r/merged"), user, files, **args)


def destinations(cfg: dict[str, Any]) -> list[str]:
    return [m["destination"] for m in cfg["mounts"]]


def test_process_defaults_follow_docker() -> None:
    cfg = config(ContainerSpec(args=("make", "all"), env=("A=1",), cwd="src"))
    process = cfg["process"]
    assert process["args"] == ["make", "all"]
    assert process["env"] == [f"PATH={DEFAULT_PATH}", "HOSTNAME=dirk", "A=1", "HOME=/root"]
    assert process["cwd"] == "/src"
    assert process["terminal"] is False
    assert process["noNewPrivileges"] is False
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]
    assert process["capabilities"]["effective"] == list(DOCKER_CAPABILITIES)
    assert process["capabilities"]["ambient"] == []
    assert cfg["root"] == {"path": "/r/merged", "readonly": False}
    assert cfg["linux"]["maskedPaths"] and cfg["linux"]["readonlyPaths"]


def test_a_console_gives_the_process_a_terminal_of_that_size() -> None:
    process = config(ContainerSpec(args=("sh",)), console=(30, 90))["process"]
    assert process["terminal"] is True
    assert process["consoleSize"] == {"height": 30, "width": 90}
    assert "TERM=xterm" in process["env"]
    own = config(ContainerSpec(args=("sh",), env=("TERM=vt100",)), console=(1, 1))["process"]
    assert [e for e in own["env"] if e.startswith("TERM=")] == ["TERM=vt100"]


def test_callers_path_and_home_win() -> None:
    env = config(ContainerSpec(args=("x",), env=("PATH=/opt/bin", "HOME=/h")))["process"]["env"]
    assert env == ["HOSTNAME=dirk", "PATH=/opt/bin", "HOME=/h"]


def test_non_root_user_keeps_only_the_bounding_set() -> None:
    user = ResolvedUser(uid=1000, gid=1000, additional_gids=(10,), home="/home/u")
    process = config(ContainerSpec(args=("id",)), user)["process"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10]}
    assert process["capabilities"]["bounding"] == list(DOCKER_CAPABILITIES)
    assert process["capabilities"]["effective"] == []
    assert "HOME=/home/u" in process["env"]


def test_privileged_gets_the_given_capabilities_and_no_masks() -> None:
    cfg = config(ContainerSpec(args=("x",), privileged=True), all_caps=("CAP_SYS_ADMIN",))
    assert cfg["process"]["capabilities"]["effective"] == ["CAP_SYS_ADMIN"]
    assert "maskedPaths" not in cfg["linux"]
    sysfs = next(m for m in cfg["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sysfs["options"]


def test_namespaces_use_the_prepared_netns_or_a_new_one() -> None:
    with_net = config(ContainerSpec(args=("x",)))["linux"]["namespaces"]
    assert {"type": "network", "path": "/run/netns/x"} in with_net
    without = config(ContainerSpec(args=("x",)), netns=None)["linux"]["namespaces"]
    assert {"type": "network"} in without
    assert {n["type"] for n in without} == {"pid", "ipc", "uts", "mount", "network"}


def test_mounts_system_then_etc_then_callers_parents_first() -> None:
    files = HostFiles(FILES.resolv_conf, FILES.hostname, FILES.hosts, Path("/etc/ca.crt"))
    spec = ContainerSpec(
        args=("x",),
        mounts=(
            BindMount(Path("/h/cache"), "/src/cache"),
            BindMount(Path("/h/src"), "src", readonly=True),
            TmpfsMount("/tmp", size=1024),
        ),
    )
    cfg = config(spec, files=files)
    assert destinations(cfg) == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm",
        "/etc/resolv.conf", "/etc/hostname", "/etc/hosts", CA_BUNDLE_PATH,
        "/src", "/tmp", "/src/cache",
    ]  # fmt: skip
    by_dest = {m["destination"]: m for m in cfg["mounts"]}
    assert by_dest["/src"]["options"] == ["rbind", "rprivate", "ro"]
    assert by_dest["/src/cache"]["options"] == ["rbind", "rprivate"]
    assert "ro" in by_dest[CA_BUNDLE_PATH]["options"]
    assert by_dest["/tmp"]["type"] == "tmpfs" and "size=1024" in by_dest["/tmp"]["options"]
    assert "ro" in by_dest["/sys/fs/cgroup"]["options"]


def test_stub_paths_list_targets_and_parents_deepest_first() -> None:
    spec = ContainerSpec(args=("x",), mounts=(BindMount(Path("/h"), "/a/b/c"),))
    paths = stub_paths(spec, ca_bundle=False)
    assert paths.index("/a/b/c") < paths.index("/a/b") < paths.index("/a")
    assert {"/proc", "/dev", "/sys", "/etc", "/etc/hosts", "/etc/resolv.conf"} <= set(paths)
    assert CA_BUNDLE_PATH not in paths
    assert CA_BUNDLE_PATH in stub_paths(spec, ca_bundle=True)
    assert "/" not in paths


def test_capabilities_of_mask() -> None:
    assert capabilities_of_mask(0xA80425FB) == tuple(
        sorted(DOCKER_CAPABILITIES, key=ALL_CAPABILITIES.index)
    )
    assert "CAP_SYS_RESOURCE" not in capabilities_of_mask(0x1FFFEFFFFFF)
    assert len(capabilities_of_mask((1 << 41) - 1)) == 41


def test_secrets_reach_the_process_env_and_mount_stubs_but_no_repr() -> None:
    from dirk.workers.executor.spec import SecretFile, build_env, stub_paths

    spec = ContainerSpec(
        args=("true",),
        env=("A=1",),
        secret_env=("TOKEN=s3cret",),
        secret_files=(SecretFile("/run/keys/id", b"k3y", 1000, 1000, 0o400),),
    )
    assert spec.has_secrets and not ContainerSpec(args=("true",)).has_secrets
    env = build_env(spec, ResolvedUser())
    assert env.index("A=1") < env.index("TOKEN=s3cret")
    assert "/run/keys/id" in stub_paths(spec, ca_bundle=False)
    assert "s3cret" not in repr(spec) and "k3y" not in repr(spec)
