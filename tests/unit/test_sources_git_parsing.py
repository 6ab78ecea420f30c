"""The git worker's pure parts: URLs, credentials in messages, ls-remote output, ref names,
patterns and semantic versions."""

from __future__ import annotations

import pytest

from dirk.errors import GitAuthError, GitRefNotFoundError, InvalidArgumentError
from dirk.workers.sources.git import (
    GitAuth,
    _classify,
    match_patterns,
    normalize_url,
    parse_ls_remote,
    reach_remote,
    redact,
    remote_id,
    resolve_name,
    semver_key,
)

A = "a" * 40
B = "b" * 40
C = "c" * 40
LS_REMOTE = (
    f"ref: refs/heads/main\tHEAD\n{A}\tHEAD\n{A}\trefs/heads/main\n{B}\trefs/heads/feature/x\n"
    f"{C}\trefs/tags/v1.0\n{A}\trefs/tags/v1.0^{{}}\n{B}\trefs/tags/light\n"
)


def test_urls_without_a_scheme_mean_https_and_scp_like_stays() -> None:
    assert normalize_url("github.com/owner/repo") == "https://github.com/owner/repo"
    assert normalize_url("git@github.com:owner/repo.git") == "git@github.com:owner/repo.git"
    assert normalize_url("ssh://git@host/repo") == "ssh://git@host/repo"
    assert normalize_url("git://host/repo") == "git://host/repo"
    for local in ("/srv/repo", "./repo", "file:///srv/repo", "ext::sh -c evil", "fd::3"):
        with pytest.raises(InvalidArgumentError, match="asGit"):
            normalize_url(local)
    with pytest.raises(InvalidArgumentError):
        normalize_url("  ")


def test_credentials_are_masked_and_left_out_of_the_cache_name() -> None:
    assert redact("fatal: https://user:hunter2@host/r failed") == "fatal: https://***@host/r failed"
    assert remote_id("https://user:hunter2@host/r") == remote_id("https://host/r")
    assert remote_id("https://host/r") != remote_id("https://host/s")
    assert "hunter2" not in repr(GitAuth(token="hunter2"))


def test_ls_remote_output_peels_annotated_tags() -> None:
    refs = parse_ls_remote(LS_REMOTE)
    assert refs.head_target == "refs/heads/main"
    assert refs.refs["refs/tags/v1.0"] == A  # the commit, not the tag object
    assert refs.branches() == ["refs/heads/feature/x", "refs/heads/main"]
    assert refs.tags() == ["refs/tags/light", "refs/tags/v1.0"]


def test_names_resolve_like_dagger() -> None:
    refs = parse_ls_remote(LS_REMOTE)
    url = "https://host/r"
    assert resolve_name(refs, "branch", "feature/x", url).commit == B
    assert resolve_name(refs, "branch", "refs/heads/main", url).name == "refs/heads/main"
    assert resolve_name(refs, "tag", "v1.0", url).commit == A
    assert resolve_name(refs, "ref", "light", url).name == "refs/tags/light"
    assert resolve_name(refs, "head", "", url).name == "refs/heads/main"
    assert resolve_name(refs, "ref", C, url).commit == C
    assert resolve_name(refs, "commit", A, url).name == A
    with pytest.raises(GitRefNotFoundError, match=r"no branch 'v1\.0'"):
        resolve_name(refs, "branch", "v1.0", url)
    with pytest.raises(InvalidArgumentError, match="40-character"):
        resolve_name(refs, "commit", "abc123", url)


def test_patterns_match_full_names_or_their_tails() -> None:
    assert match_patterns("refs/tags/v1.0", ["v*"])
    assert match_patterns("refs/tags/v1.0", ["refs/tags/v*"])
    assert match_patterns("refs/heads/feature/x", ["feature/*"])
    assert not match_patterns("refs/heads/feature/x", ["eature/*"])
    assert match_patterns("refs/heads/main", [])


def test_semver_ordering_puts_releases_after_prereleases() -> None:
    tags = ["v1.2.0", "v1.10.0", "v1.10.0-rc.1", "1.9.9", "latest", "v2.0.0-alpha"]
    ranked = sorted((k, t) for t in tags if (k := semver_key(t)) is not None)
    assert [t for _, t in ranked] == ["v1.2.0", "1.9.9", "v1.10.0-rc.1", "v1.10.0", "v2.0.0-alpha"]
    assert semver_key("latest") is None


def test_git_failures_are_classified_without_credentials() -> None:
    url = "https://u:pw@host/r"
    auth = _classify(["ls-remote"], "fatal: Authentication failed for 'https://u:pw@host/r'", url)
    assert isinstance(auth, GitAuthError) and "pw" not in str(auth)
    unreachable = _classify(["ls-remote"], "fatal: unable to access: Connection refused", url)
    assert "unreachable" in str(unreachable)


HOSTS = {"gitsrv": "10.89.0.7"}


@pytest.mark.parametrize(
    ("url", "config", "ssh"),
    [
        ("http://gitsrv:8080/r.git", (("http.curloptResolve", "gitsrv:8080:10.89.0.7"),), ()),
        ("https://GitSrv/r.git", (("http.curloptResolve", "gitsrv:443:10.89.0.7"),), ()),
        (
            "git://gitsrv/r.git",
            (("url.git://10.89.0.7/.insteadOf", "git://gitsrv/"),),
            (),
        ),
        (
            "git://gitsrv:9419/r.git",
            (("url.git://10.89.0.7:9419/.insteadOf", "git://gitsrv:9419/"),),
            (),
        ),
        ("ssh://git@gitsrv:2222/r", (), ("-o", "HostName=10.89.0.7", "-o", "HostKeyAlias=gitsrv")),
        ("git@gitsrv:o/r.git", (), ("-o", "HostName=10.89.0.7", "-o", "HostKeyAlias=gitsrv")),
    ],
)
def test_a_remote_on_a_mapped_host_is_reached_at_its_address(
    url: str, config: tuple[tuple[str, str], ...], ssh: tuple[str, ...]
) -> None:
    reach = reach_remote(url, HOSTS)
    assert reach is not None
    assert (reach.host, reach.config, reach.ssh_options) == ("gitsrv", config, ssh)


def test_a_remote_on_another_host_is_left_alone() -> None:
    assert reach_remote("https://gitsrv.example.com/r.git", HOSTS) is None
    assert reach_remote("git@elsewhere:o/r.git", HOSTS) is None
