"""The app against a real database (DATABASE_URL, DATABASE_PASSWORD): `python -m unittest`."""

from __future__ import annotations

import json
import threading
import unittest
import urllib.error
import urllib.request

import app
from pgwire import PgError


class NotesTest(unittest.TestCase):
    server: app.ThreadingHTTPServer
    base: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.server = app.serve(0)
        cls.base = f"http://127.0.0.1:{cls.server.server_address[1]}"
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        with app.connect() as db:
            db.execute("TRUNCATE notes RESTART IDENTITY")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.shutdown()
        cls.server.server_close()

    def request(self, path: str, data: bytes | None = None) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(self.base + path, data=data, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def test_a_note_is_stored_and_listed(self) -> None:
        text = 'it\'s a "quoted" note; DROP TABLE notes; --'
        status, created = self.request("/notes", text.encode())
        self.assertEqual(status, 201)
        status, notes = self.request("/notes")
        self.assertEqual(status, 200)
        self.assertIn(created, notes)
        with app.connect() as db:
            count = db.execute("SELECT count(*) FROM notes WHERE body = $1", [text])
        self.assertEqual(count, [("1",)])

    def test_an_empty_note_is_refused(self) -> None:
        status, answer = self.request("/notes", b"")
        self.assertEqual(status, 400)
        self.assertIn("1 to", str(answer))

    def test_health_answers_once_the_database_does(self) -> None:
        self.assertEqual(self.request("/health"), (200, {"status": "ok"}))

    def test_the_client_reports_sql_errors_and_nulls(self) -> None:
        with app.connect() as db:
            with self.assertRaises(PgError) as failed:
                db.execute("SELECT * FROM no_such_table")
            self.assertEqual(failed.exception.code, "42P01")
            self.assertEqual(db.execute("SELECT NULL::text, $1::int + 1", [41]), [(None, "42")])


if __name__ == "__main__":
    unittest.main()
