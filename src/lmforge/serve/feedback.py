"""The web chat's store: conversations, messages, feedback and user profiles in one SQLite file.

One file (`$LMFORGE_HOME/serve.db` unless a path is given) in WAL mode, so the server's
threads read while one writes. Every write is one transaction: it is all there after the
call returns, or none of it is. `export()` turns the feedback into training data in the
formats `lmforge tune` reads:

- dpo: `{"prompt": [messages before the reply], "chosen": ..., "rejected": ...}` from an
  edited reply (chosen = the edit, rejected = the original) and from a thumbs-down reply
  paired with a thumbs-up reply to the same prompt;
- sft: `{"messages": [..., {"role": "assistant", ...}]}` from thumbs-up replies and edits.

A prompt is the conversation's system prompt and the turns before the reply as the user saw
them (earlier replies with their edits). The profile is not part of it: it is added to the
system prompt at request time and may have changed since.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
import uuid
from contextlib import closing, contextmanager
from itertools import product
from pathlib import Path

from lmforge.errors import InvalidInputError, NotFoundError

FORMATS = ("dpo", "sft")
RATINGS = {"up": 1, "down": -1, None: None}

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    title TEXT NOT NULL,
    model TEXT NOT NULL,
    system TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_user ON conversations (user, updated);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content TEXT NOT NULL,
    stopped INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, id);
CREATE TABLE IF NOT EXISTS feedback (
    message INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    rating INTEGER CHECK (rating IN (-1, 1)),
    edited TEXT,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    user TEXT PRIMARY KEY,
    facts TEXT NOT NULL,
    preferences TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


def default_path() -> Path:
    from lmforge.store import home

    return home() / "serve.db"


class FeedbackStore:
    """Conversations, feedback and profiles in one SQLite file; opened on first use."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_path()
        self._ready = False

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _db(self):
        """A connection inside one transaction: committed on success, rolled back on error."""
        if self.path.is_dir():
            raise InvalidInputError(
                f"feedback store {self.path} is a folder", "give the path of a .db file"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            with closing(conn):
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA foreign_keys = ON")
                if not self._ready:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.executescript(SCHEMA)
                    self._ready = True
                with conn:  # BEGIN ... COMMIT, or ROLLBACK on an exception
                    yield conn
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "malformed" in str(e):
                raise InvalidInputError(
                    f"{self.path} is not a readable SQLite database ({e})",
                    "move it away and let lmforge create a new one, or pass --db",
                ) from e
            raise

    # -- conversations ----------------------------------------------------------------------

    def create_conversation(
        self, user: str, system: str = "", model: str = "", title: str = ""
    ) -> dict:
        _check_text(user, "user", empty=False)
        now = time.time()
        row = {
            "id": uuid.uuid4().hex,
            "user": user,
            "title": title.strip()[:80] or "New chat",
            "model": model,
            "system": system,
            "created": now,
            "updated": now,
        }
        with self._db() as db:
            db.execute(
                "INSERT INTO conversations VALUES (:id, :user, :title, :model, :system, "
                ":created, :updated)",
                row,
            )
        return row

    def update_conversation(
        self, conversation: str, system: str | None = None, title: str | None = None
    ) -> dict:
        with self._db() as db:
            self._conversation_row(db, conversation)
            if system is not None:
                db.execute(
                    "UPDATE conversations SET system = ? WHERE id = ?", (system, conversation)
                )
            if title is not None and title.strip():
                db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ?", (title[:80], conversation)
                )
            db.execute(
                "UPDATE conversations SET updated = ? WHERE id = ?", (time.time(), conversation)
            )
        return self.conversation(conversation)

    def conversations(self, user: str) -> list[dict]:
        """The user's conversations, the latest first (no messages)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM conversations WHERE user = ? ORDER BY updated DESC", (user,)
            ).fetchall()
        return [dict(row) for row in rows]

    def conversation(self, conversation: str) -> dict:
        """A conversation with its messages, each with its feedback (rating, edited)."""
        with self._db() as db:
            row = dict(self._conversation_row(db, conversation))
            row["messages"] = [
                _message(m)
                for m in db.execute(
                    "SELECT m.*, f.rating, f.edited FROM messages m LEFT JOIN feedback f "
                    "ON f.message = m.id WHERE m.conversation = ? ORDER BY m.id",
                    (conversation,),
                )
            ]
        return row

    def delete_conversation(self, conversation: str) -> None:
        with self._db() as db:
            self._conversation_row(db, conversation)
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation,))

    def add_message(
        self, conversation: str, role: str, content: str, stopped: bool = False
    ) -> dict:
        if role not in ("user", "assistant"):
            raise InvalidInputError(f"unknown role {role!r}", "use 'user' or 'assistant'")
        _check_text(content, "content", empty=role == "assistant")
        now = time.time()
        with self._db() as db:
            self._conversation_row(db, conversation)
            cursor = db.execute(
                "INSERT INTO messages (conversation, role, content, stopped, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (conversation, role, content, int(stopped), now),
            )
            db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation))
        return {
            "id": cursor.lastrowid,
            "role": role,
            "content": content,
            "stopped": bool(stopped),
            "rating": None,
            "edited": None,
        }

    # -- feedback ---------------------------------------------------------------------------

    def set_feedback(self, message: int, **changes) -> dict:
        """Set a reply's `rating` ("up", "down" or None) and/or `edited` text (None clears)."""
        unknown = sorted(set(changes) - {"rating", "edited"})
        if unknown:
            raise InvalidInputError(
                f"unknown feedback field(s): {', '.join(unknown)}", "use rating, edited"
            )
        if "rating" in changes and changes["rating"] not in RATINGS:
            raise InvalidInputError(
                f"invalid rating {changes['rating']!r}", "use 'up', 'down' or null"
            )
        if changes.get("edited") is not None:
            _check_text(changes["edited"], "edited", empty=False)
        with self._db() as db:
            row = db.execute(
                "SELECT m.role, f.rating, f.edited FROM messages m LEFT JOIN feedback f "
                "ON f.message = m.id WHERE m.id = ?",
                (message,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no message {message}", "rate a reply that exists")
            if row["role"] != "assistant":
                raise InvalidInputError(
                    f"message {message} is the user's", "give feedback on the model's replies"
                )
            rating = RATINGS[changes["rating"]] if "rating" in changes else row["rating"]
            edited = changes["edited"] if "edited" in changes else row["edited"]
            db.execute(
                "INSERT INTO feedback (message, rating, edited, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (message) DO UPDATE SET rating = excluded.rating, "
                "edited = excluded.edited, updated = excluded.updated",
                (message, rating, edited, time.time()),
            )
        return {"id": message, "rating": _rating_name(rating), "edited": edited}

    # -- profiles ---------------------------------------------------------------------------

    def profile(self, user: str) -> dict:
        with self._db() as db:
            row = db.execute("SELECT * FROM profiles WHERE user = ?", (user,)).fetchone()
        if row is None:
            return {"user": user, "facts": [], "preferences": []}
        return {
            "user": user,
            "facts": json.loads(row["facts"]),
            "preferences": json.loads(row["preferences"]),
        }

    def set_profile(self, user: str, facts: list[str], preferences: list[str]) -> dict:
        _check_text(user, "user", empty=False)
        for name, items in (("facts", facts), ("preferences", preferences)):
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise InvalidInputError(f"{name} must be a list of strings", "one item per line")
        facts = [f.strip() for f in facts if f.strip()]
        preferences = [p.strip() for p in preferences if p.strip()]
        with self._db() as db:
            db.execute(
                "INSERT INTO profiles VALUES (?, ?, ?, ?) ON CONFLICT (user) DO UPDATE SET "
                "facts = excluded.facts, preferences = excluded.preferences, "
                "updated = excluded.updated",
                (user, json.dumps(facts), json.dumps(preferences), time.time()),
            )
        return {"user": user, "facts": facts, "preferences": preferences}

    def profile_prompt(self, user: str) -> str:
        """The profile as a paragraph for the system prompt ("" if there is none)."""
        profile = self.profile(user)
        parts = []
        if profile["facts"]:
            parts.append("Facts about the user:\n" + "\n".join(f"- {f}" for f in profile["facts"]))
        if profile["preferences"]:
            parts.append(
                "The user's preferences:\n" + "\n".join(f"- {p}" for p in profile["preferences"])
            )
        return "\n\n".join(parts)

    # -- export -----------------------------------------------------------------------------

    def records(self, format: str) -> list[dict]:
        """The training records of one format, oldest conversation first."""
        if format not in FORMATS:
            raise InvalidInputError(f"unknown export format {format!r}", "use dpo or sft")
        with self._db() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM conversations ORDER BY created")]
        # (prompt, original, rating, edited) of every reply that has feedback
        rated: list[tuple[list[dict], str, int | None, str | None]] = []
        for conversation_id in ids:
            conversation = self.conversation(conversation_id)
            history = [{"role": "system", "content": conversation["system"]}]
            history = history if conversation["system"].strip() else []
            for m in conversation["messages"]:
                rating = RATINGS[m["rating"]]
                if m["role"] == "assistant" and (rating is not None or m["edited"]):
                    rated.append((list(history), m["content"], rating, m["edited"]))
                history.append({"role": m["role"], "content": m["edited"] or m["content"]})
        rated = [r for r in rated if r[0] and r[0][-1]["role"] == "user"]
        if format == "sft":
            return [
                {"messages": [*prompt, {"role": "assistant", "content": edited or original}]}
                for prompt, original, rating, edited in rated
                if (edited or (rating == 1 and original.strip()))
            ]
        pairs = [
            {"prompt": prompt, "chosen": edited, "rejected": original}
            for prompt, original, _, edited in rated
            if edited and edited != original
        ]
        by_prompt: dict[str, tuple[list[str], list[str]]] = {}
        for prompt, original, rating, edited in rated:
            ups, downs = by_prompt.setdefault(json.dumps(prompt), ([], []))
            text = edited or original
            if rating == 1 and text.strip():
                ups.append(text)
            elif rating == -1 and original.strip():
                downs.append(original)
        for key, (ups, downs) in by_prompt.items():
            for up, down in product(ups, downs):
                if up != down:
                    pairs.append({"prompt": json.loads(key), "chosen": up, "rejected": down})
        return pairs

    def export(self, format: str, path: str | Path) -> int:
        """Write the records of `format` ("dpo" or "sft") to `path` as JSONL, atomically."""
        records = self.records(format)
        if not records:
            what = (
                "edited or thumbs-down/up replies"
                if format == "dpo"
                else "thumbs-up or edited replies"
            )
            raise InvalidInputError(
                f"no {format} training data in {self.path}: it has no {what}",
                "rate or edit replies in the web chat (`lmforge serve`, then open /)",
            )
        path = Path(path)
        if path.is_dir():
            raise InvalidInputError(f"{path} is a folder", "give a file name, e.g. feedback.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return len(records)

    @staticmethod
    def _conversation_row(db: sqlite3.Connection, conversation: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM conversations WHERE id = ?", (conversation,)).fetchone()
        if row is None:
            raise NotFoundError(
                f"no conversation {conversation!r}", "list them at /ui/conversations"
            )
        return row


def _rating_name(rating: int | None) -> str | None:
    return {1: "up", -1: "down", None: None}[rating]


def _message(row: sqlite3.Row) -> dict:
    return {
        "id": row["id"],
        "role": row["role"],
        "content": row["content"],
        "stopped": bool(row["stopped"]),
        "rating": _rating_name(row["rating"]),
        "edited": row["edited"],
    }


def _check_text(value, name: str, empty: bool) -> None:
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{name} must be a string, got {type(value).__name__}", f"send {name} as text"
        )
    if not empty and not value.strip():
        raise InvalidInputError(f"{name} is empty", f"fill in {name}")
