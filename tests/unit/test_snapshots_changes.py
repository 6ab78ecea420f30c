"""Comparing two trees, copying and applying what changed, counting patch lines, merge
conflicts: on plain directories standing in for mounted snapshots."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dirk.errors import InvalidArgumentError, SnapshotPathError
from dirk.workers.snapshots import changes, merge, metaops, patches


def tree(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_compare_lists_added_modified_and_removed_like_dagger(tmp_path: Path) -> None:
    before = tree(
        tmp_path / "b", {"same": "s", "edit": "1", "mode": "m", "old/x": "x", "old/y/z": "z"}
    )
    after = tree(tmp_path / "a", {"same": "s", "edit": "2", "mode": "m", "new/n": "n"})
    os.chmod(after / "mode", 0o755)
    os.symlink("same", after / "link")
    os.utime(after / "same", (1, 1))  # times alone are no change
    found = changes.compare_trees(before, after)
    assert found.added == ("link", "new/", "new/n")
    assert found.modified == ("edit", "mode")
    assert found.all_removed == ("old/", "old/x", "old/y/", "old/y/z")
    assert found.removed == ("old/",)
    assert not found.empty
    assert changes.compare_trees(before, before).empty


def test_a_file_turned_into_a_directory_is_removed_then_added(tmp_path: Path) -> None:
    before = tree(tmp_path / "b", {"p": "file"})
    after = tree(tmp_path / "a", {"p/inner": "i"})
    found = changes.compare_trees(before, after)
    assert (found.added, found.modified, found.removed) == (("p/", "p/inner"), (), ("p",))


def test_overlay_whiteouts_read_as_absent(tmp_path: Path) -> None:
    before = tree(tmp_path / "b", {"gone": "g"})
    after = tree(tmp_path / "a", {})
    os.mknod(after / "gone", 0o600 | 0o020000, 0)  # a whiteout: char device 0:0
    assert changes.compare_trees(before, after).removed == ("gone",)


def test_apply_changes_removes_and_copies_without_following_links_out(tmp_path: Path) -> None:
    before = tree(tmp_path / "b", {"a": "1", "d/x": "x"})
    after = tree(tmp_path / "a", {"a": "2", "new/n": "n"})
    outside = tree(tmp_path / "outside", {"x": "keep me"})
    dest = tree(tmp_path / "dest", {"a": "1", "other": "o"})
    os.symlink(outside, dest / "d")  # removing d/x must not reach through this link
    found = changes.compare_trees(before, after)
    changes.apply_changes(after, found, dest)
    assert (dest / "a").read_text() == "2"
    assert (dest / "new" / "n").read_text() == "n"
    assert (dest / "other").read_text() == "o"
    assert (outside / "x").read_text() == "keep me"


def test_diff_patch_applies_back_and_counts_lines(tmp_path: Path) -> None:
    before = tree(tmp_path / "b", {"edit": "1\n2\n", "gone": "g\n"})
    after = tree(tmp_path / "a", {"edit": "1\nzwei\n", "new/n": "n\nm\n"})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    patch = patches.diff_patch(before, after, scratch)
    assert not list(scratch.iterdir())  # the bind mounts are gone
    counts = patches.line_counts(patch)
    assert counts == {
        "edit": patches.LineCounts(1, 1),
        "gone": patches.LineCounts(0, 1),
        "new/n": patches.LineCounts(2, 0),
    }
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(before), str(copy)], check=True)
    patches.apply_patch(copy, patch)
    assert changes.compare_trees(copy, after).empty


def test_a_patch_that_does_not_fit_changes_nothing(tmp_path: Path) -> None:
    target = tree(tmp_path / "t", {"f": "one\n", "g": "g\n"})
    bad = b"--- a/g\n+++ b/g\n@@ -1 +1 @@\n-g\n+G\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-other\n+two\n"
    with pytest.raises(InvalidArgumentError, match="does not apply"):
        patches.apply_patch(target, bad)
    assert (target / "g").read_text() == "g\n"


def test_merge_conflicts_follow_dagger_rules() -> None:
    ours = changes.TreeChanges(added=("d/", "d/a", "both"), modified=("m", "md"))
    theirs = changes.TreeChanges(added=("d/", "d/b", "both"), modified=("m",), all_removed=("md",))
    found = merge.conflicts(ours, theirs)
    assert found == [
        "both: added in both changesets",
        "m: modified in both changesets",
        "md: modified in one changeset and removed in the other",
    ]


def test_symlink_timestamps_and_chown(tmp_path: Path) -> None:
    root = tree(tmp_path / "r", {"d/f": "f", "file": "x"})
    metaops.make_symlink(root, "/d/f", "links/abs")
    assert os.readlink(root / "links" / "abs") == "/d/f"
    metaops.make_symlink(root, "d/f", "file")  # a file there is replaced
    assert os.readlink(root / "file") == "d/f"
    with pytest.raises(SnapshotPathError, match="a directory is there"):
        metaops.make_symlink(root, "x", "d")
    metaops.set_timestamps(root, "d", 12345)
    assert os.stat(root / "d").st_mtime == 12345 and os.stat(root / "d" / "f").st_mtime == 12345
    os.chmod(root / "d" / "f", 0o4755)
    metaops.chown_tree(root, "d", 10, 20)
    st = os.stat(root / "d" / "f")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (10, 20, 0o4755)
    with pytest.raises(SnapshotPathError, match="no such file"):
        metaops.chown_tree(root, "missing", 1, 1)


def test_only_paths_in_the_added_layers_are_compared(tmp_path: Path) -> None:
    before = tree(tmp_path / "b", {"edit": "1", "gone": "g", "same": "s", "opq/old": "o"})
    before = tree(before, {"keep/k": "k", "untouched": "u"})
    layer = tree(tmp_path / "layer", {"edit": "2", "same": "s", "new/n": "n", "opq/fresh": "f"})
    os.mknod(layer / "gone", 0o600 | 0o020000, 0)
    os.setxattr(layer / "opq", "trusted.overlay.opaque", b"y")
    after = tree(tmp_path / "a", {"edit": "2", "same": "s", "new/n": "n", "opq/fresh": "f"})
    after = tree(after, {"keep/k": "k", "untouched": "changed behind the layers' back"})
    touched = changes.touched_by([layer])
    found = changes.compare_trees(before, after, touched)
    assert found.added == ("new/", "new/n", "opq/fresh")
    assert found.modified == ("edit",)
    assert found.all_removed == ("gone", "opq/old")
    # Without the layers, every path is compared: the untouched one shows too.
    assert changes.compare_trees(before, after).modified == ("edit", "untouched")
    assert touched.below(["opq", "x"]).full
    assert touched.below(["keep"]).children == {}
