"""The web chat's SQLite store and its export to the data formats `lmforge tune` reads."""

from __future__ import annotations

import json
import sqlite3

import pytest

from lmforge.cli import main
from lmforge.errors import InvalidInputError, NotFoundError
from lmforge.serve.feedback import FeedbackStore
from lmforge.tune.data import read_examples
from lmforge.tune.dpo import read_pairs


@pytest.fixture
def store(tmp_path) -> FeedbackStore:
    return FeedbackStore(tmp_path / "serve.db")


def chat(store: FeedbackStore, user: str, system: str, turns: list[tuple[str, str]]):
    """A conversation of (question, answer) turns; returns it and its assistant messages."""
    c = store.create_conversation(user, system=system, model="tiny", title=turns[0][0])
    replies = []
    for question, answer in turns:
        store.add_message(c["id"], "user", question)
        replies.append(store.add_message(c["id"], "assistant", answer))
    return c, replies


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_store_keeps_conversations_feedback_and_profiles(store):
    assert store.conversations("ann") == []
    c, (reply,) = chat(store, "ann", "Be brief.", [("Capital of France?", "Paris.")])
    chat(store, "bob", "", [("Hi", "Hello")])
    store.set_feedback(reply["id"], rating="up")
    store.set_feedback(reply["id"], edited="Paris is the capital.")  # keeps the rating
    listed = store.conversations("ann")
    assert [x["id"] for x in listed] == [c["id"]] and listed[0]["title"] == "Capital of France?"
    got = store.conversation(c["id"])
    assert got["system"] == "Be brief."
    assert [(m["role"], m["content"], m["rating"], m["edited"]) for m in got["messages"]] == [
        ("user", "Capital of France?", None, None),
        ("assistant", "Paris.", "up", "Paris is the capital."),
    ]
    store.set_feedback(reply["id"], rating=None, edited=None)
    assert store.conversation(c["id"])["messages"][1]["rating"] is None

    assert store.profile("ann") == {"user": "ann", "facts": [], "preferences": []}
    assert store.profile_prompt("ann") == ""
    store.set_profile("ann", ["Lives in Lyon", " "], ["Answers in French"])
    assert store.profile("ann")["facts"] == ["Lives in Lyon"]
    assert "- Lives in Lyon" in store.profile_prompt("ann")
    assert "- Answers in French" in store.profile_prompt("ann")

    # WAL, and a second store on the same file (another process) sees everything
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert FeedbackStore(store.path).conversation(c["id"]) == store.conversation(c["id"])
    store.delete_conversation(c["id"])
    assert store.conversations("ann") == []


def test_a_failed_write_leaves_nothing(store, monkeypatch):
    c, _ = chat(store, "ann", "", [("Q", "A")])
    before = store.conversation(c["id"])
    with store._db() as db:  # the transaction the store uses: an error rolls it all back
        db.execute("SELECT 1")
    with pytest.raises(RuntimeError), store._db() as db:
        db.execute(
            "INSERT INTO messages (conversation, role, content, created) VALUES (?, 'user', 'x', 0)",
            (c["id"],),
        )
        raise RuntimeError("crash mid-write")
    assert store.conversation(c["id"]) == before


def test_export_dpo_and_sft_load_with_tunes_readers(store, tmp_path, tiny_tokenizer):
    # an edited reply: chosen = the edit, rejected = the original
    _, (first, second) = chat(
        store, "ann", "Be brief.", [("Capital of France?", "Lyon."), ("And Spain?", "Madrid.")]
    )
    store.set_feedback(first["id"], edited="Paris.")
    store.set_feedback(second["id"], rating="up")
    # the same prompt answered twice, once liked and once not
    _, (good,) = chat(store, "bob", "", [("2+2?", "4")])
    _, (bad,) = chat(store, "bob", "", [("2+2?", "5")])
    store.set_feedback(good["id"], rating="up")
    store.set_feedback(bad["id"], rating="down")
    _, (unrated,) = chat(store, "bob", "", [("Hi", "Hello")])

    dpo = tmp_path / "dpo.jsonl"
    assert store.export("dpo", dpo) == 2
    assert lines(dpo) == [
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
            ],
            "chosen": "Paris.",
            "rejected": "Lyon.",
        },
        {"prompt": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"},
    ]
    pairs, stats = read_pairs(dpo, tiny_tokenizer, max_len=256)
    assert stats.examples == 2 and len(pairs) == 2

    sft = tmp_path / "sft.jsonl"
    assert store.export("sft", sft) == 3
    records = lines(sft)
    assert records[0]["messages"][-1] == {"role": "assistant", "content": "Paris."}
    # a later turn's prompt shows earlier replies as edited
    assert records[1]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Spain?"},
        {"role": "assistant", "content": "Madrid."},
    ]
    assert records[2]["messages"][-1]["content"] == "4"
    assert all(r["messages"][-1]["content"] != unrated["content"] for r in records)
    examples, stats = read_examples(sft, tiny_tokenizer, max_len=256)
    assert stats.examples == 3 and len(examples) == 3


def test_cli_export(store, tmp_path, capsys):
    _, (reply,) = chat(store, "ann", "", [("Q", "A")])
    store.set_feedback(reply["id"], edited="Better A")
    out = tmp_path / "out" / "dpo.jsonl"
    main(["feedback", "export", "--format", "dpo", "--out", str(out), "--db", str(store.path)])
    assert "wrote 1 dpo record" in capsys.readouterr().out
    assert lines(out)[0]["chosen"] == "Better A"
    assert not list(out.parent.glob(".*.tmp"))  # written through a temp file, renamed

    with pytest.raises(SystemExit) as e:
        main(["feedback", "export", "--format", "dpo", "--out", str(out), "--db", "nope.db"])
    assert e.value.code == 2
    assert "no feedback store at nope.db" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["feedback", "export", "--format", "csv", "--out", str(out)])
    assert e.value.code == 2


def test_bad_input_is_a_clear_error(store, tmp_path):
    c, (reply,) = chat(store, "ann", "", [("Q", "A")])
    question = store.conversation(c["id"])["messages"][0]
    with pytest.raises(InvalidInputError, match="use 'up', 'down' or null"):
        store.set_feedback(reply["id"], rating="meh")
    with pytest.raises(InvalidInputError, match="unknown feedback field"):
        store.set_feedback(reply["id"], stars=5)
    with pytest.raises(InvalidInputError, match="edited is empty"):
        store.set_feedback(reply["id"], edited="  ")
    with pytest.raises(InvalidInputError, match="the user's"):
        store.set_feedback(question["id"], rating="up")
    with pytest.raises(NotFoundError, match="no message 999"):
        store.set_feedback(999, rating="up")
    with pytest.raises(NotFoundError, match="no conversation"):
        store.add_message("missing", "user", "hi")
    with pytest.raises(InvalidInputError, match="unknown role"):
        store.add_message(c["id"], "tool", "hi")
    with pytest.raises(InvalidInputError, match="user is empty"):
        store.create_conversation("")
    with pytest.raises(InvalidInputError, match="use dpo or sft"):
        store.export("csv", tmp_path / "x.jsonl")
    with pytest.raises(InvalidInputError, match="no dpo training data"):
        store.export("dpo", tmp_path / "x.jsonl")  # nothing rated or edited yet
    assert not (tmp_path / "x.jsonl").exists()

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InvalidInputError, match="not a readable SQLite database"):
        FeedbackStore(garbage).conversations("ann")
    with pytest.raises(InvalidInputError, match="is a folder"):
        FeedbackStore(tmp_path).conversations("ann")
