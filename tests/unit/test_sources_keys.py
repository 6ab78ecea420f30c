"""What the keys of git checkouts and HTTP downloads cover: content and options, never the
URL, the ref name that led to a commit, or credentials."""

from __future__ import annotations

from dirk.solver.keys import cache_key
from dirk.solver.ops import GitAuthRef, GitCheckout, HttpFetch, SecretRef
from dirk.workers.sources.http import check_checksum, default_name

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32


def test_a_checkout_is_keyed_by_commit_and_options() -> None:
    base = GitCheckout("https://host/a", kind="branch", name="main", commit=COMMIT)
    other = GitCheckout(
        "https://mirror/a",
        kind="tag",
        name="v1",
        commit=COMMIT,
        auth=GitAuthRef(username="u", token=SecretRef("name:s", "h")),
    )
    assert cache_key(base, []) == cache_key(other, [])
    assert cache_key(base, []) != cache_key(GitCheckout("https://host/a", commit="f" * 40), [])
    kept = GitCheckout("https://host/a", commit=COMMIT, keep_git_dir=True)
    assert cache_key(kept, []) != cache_key(base, [])
    deeper = GitCheckout("https://host/a", commit=COMMIT, keep_git_dir=True, depth=5)
    assert cache_key(deeper, []) != cache_key(kept, [])


def test_a_download_is_keyed_by_content_name_and_mode() -> None:
    one = HttpFetch("https://a/f", "f", digest=DIGEST)
    mirror = HttpFetch("https://b/f?token=x", "f", checksum=DIGEST, digest=DIGEST)
    assert cache_key(one, []) == cache_key(mirror, [])
    assert cache_key(one, []) != cache_key(HttpFetch("https://a/f", "g", digest=DIGEST), [])
    executable = HttpFetch("https://a/f", "f", permissions=0o755, digest=DIGEST)
    assert cache_key(one, []) != cache_key(executable, [])


def test_default_names_and_checksums() -> None:
    assert default_name("https://host/dir/file.tar.gz?x=1") == "file.tar.gz"
    assert default_name("https://host/") == "index"
    assert default_name("https://host/a%20b") == "a b"
    assert check_checksum("sha256:" + "AB" * 32) == "sha256:" + "ab" * 32
