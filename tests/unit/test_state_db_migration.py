"""The engine's database: one made by an older engine (schema 1, no kind/description on cache
rows) opens and is brought up to date without losing its rows; the collector's bookkeeping
(`cache_rows`, `forget`, `set_layer_sizes`) does what it says in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from dirk.errors import StateError
from dirk.state.db import SCHEMA_VERSION, Database

OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cache (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL,
    created REAL NOT NULL,
    last_used REAL NOT NULL
);
INSERT INTO meta(key, value) VALUES ('schema_version', '1');
INSERT INTO cache(key, result, created, last_used)
    VALUES ('old-key', '{"outputs": [["l1"]]}', 10.0, 20.0);
"""


def _old_database(path: Path) -> None:
    conn = sqlite3.connect(str(path))
    conn.executescript(OLD_SCHEMA)
    conn.commit()
    conn.close()


def _columns(db: Database) -> list[str]:
    return [str(row[1]) for row in db.execute("PRAGMA table_info(cache)")]


def _version(db: Database) -> str:
    return str(db.execute("SELECT value FROM meta WHERE key = 'schema_version'")[0][0])


def test_an_old_database_gets_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "dirk.db"
    _old_database(path)
    db = Database(path)
    try:
        assert _columns(db) == [
            "key",
            "result",
            "created",
            "last_used",
            "kind",
            "description",
        ]
        assert SCHEMA_VERSION == 2
        assert _version(db) == "2"
        [row] = db.cache_rows()
        assert (row.key, row.created, row.last_used) == ("old-key", 10.0, 20.0)
        assert (row.kind, row.description) == ("", "")
        assert db.cache_get("old-key") == {"outputs": [["l1"]]}
        # The tables the old engine had not made exist now.
        db.add_layer("l1", None, 5)
        assert db.layer_ids() == {"l1"}
    finally:
        db.close()


def test_opening_a_migrated_database_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "dirk.db"
    _old_database(path)
    Database(path).close()
    db = Database(path)
    try:
        assert _columns(db).count("kind") == 1
        assert _version(db) == "2"
        assert [r.key for r in db.cache_rows()] == ["old-key"]
        indexes = {str(r[1]) for r in db.execute("PRAGMA index_list(cache)")}
        assert "cache_last_used" in indexes
    finally:
        db.close()


def test_a_file_that_is_not_a_database_is_a_state_error(tmp_path: Path) -> None:
    path = tmp_path / "dirk.db"
    path.write_bytes(b"not a database at all, just bytes" * 100)
    with pytest.raises(StateError, match="move it aside"):
        Database(path)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "dirk.db")
    yield database
    database.close()


def test_cache_rows_round_trip_kind_and_description(db: Database) -> None:
    db.cache_put("k1", {"outputs": [["a", "b"]], "exit": 0}, kind="Exec", description="run make")
    db.cache_put("k2", {"outputs": []})
    rows = {r.key: r for r in db.cache_rows()}
    assert (rows["k1"].kind, rows["k1"].description) == ("Exec", "run make")
    assert (rows["k2"].kind, rows["k2"].description) == ("", "")
    assert rows["k1"].result == '{"exit": 0, "outputs": [["a", "b"]]}'
    assert rows["k1"].created <= rows["k1"].last_used
    # Writing a key again replaces its row, description included.
    db.cache_put("k1", {"outputs": []}, kind="Exec", description="run make again")
    assert {r.key: r.description for r in db.cache_rows()}["k1"] == "run make again"


def _fill(db: Database) -> None:
    for layer in ("l1", "l2"):
        db.add_layer(layer, f"src-{layer}", 0)
        db.add_layer_blob(layer, "gzip", f"sha256:{layer}-gz", f"sha256:{layer}-tar", 10)
        db.add_layer_blob(layer, "zstd", f"sha256:{layer}-zst", f"sha256:{layer}-tar", 9)
    db.add_blob_source("sha256:l1-gz", "registry.example", "team/app")
    db.add_blob_source("sha256:l2-gz", "registry.example", "team/app")
    db.cache_put("k1", {"outputs": [["l1"]]})
    db.cache_put("k2", {"outputs": [["l2"]]})


def test_forget_drops_rows_layers_their_blobs_and_blob_sources(db: Database) -> None:
    _fill(db)
    db.forget(["k1"], ["l1"], ["sha256:l1-gz"])
    assert [r.key for r in db.cache_rows()] == ["k2"]
    assert db.layer_ids() == {"l2"}
    assert db.layer_blobs("l1") == []
    assert [c for c, _, _, _ in db.layer_blobs("l2")] == ["gzip", "zstd"]
    assert db.blob_sources("sha256:l1-gz", "registry.example") == []
    assert db.blob_sources("sha256:l2-gz", "registry.example") == ["team/app"]
    assert {layer for layer, _, _ in db.all_layer_blobs()} == {"l2"}


def test_forget_is_all_or_nothing(db: Database) -> None:
    _fill(db)
    unbindable: list[str] = [object()]  # type: ignore[list-item]
    with pytest.raises(sqlite3.Error):
        db.forget(["k1"], unbindable, [])
    # The row deleted before the failure is back: the transaction rolled back.
    assert {r.key for r in db.cache_rows()} == {"k1", "k2"}
    assert db.layer_ids() == {"l1", "l2"}
    # And the connection is usable afterwards.
    db.forget(["k1"], [], [])
    assert {r.key for r in db.cache_rows()} == {"k2"}


def test_forget_of_nothing_changes_nothing(db: Database) -> None:
    _fill(db)
    db.forget([], [], [])
    db.forget(["unknown"], ["unknown"], ["sha256:unknown"])
    assert {r.key for r in db.cache_rows()} == {"k1", "k2"}
    assert db.layer_ids() == {"l1", "l2"}


def test_set_layer_sizes(db: Database) -> None:
    _fill(db)
    assert {r.id: r.size for r in db.layer_rows()} == {"l1": 0, "l2": 0}
    db.set_layer_sizes({"l1": 4096, "unknown": 7})
    rows = {r.id: r for r in db.layer_rows()}
    assert rows["l1"].size == 4096
    assert rows["l2"].size == 0
    assert rows["l1"].source == "src-l1"
    assert "unknown" not in rows
