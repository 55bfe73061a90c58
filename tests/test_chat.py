import io

import lmforge
from lmforge.chat import ChatSession


def test_session_keeps_history_and_commands(tiny_model_dir):
    session = ChatSession(
        lmforge.load(str(tiny_model_dir)), system="be brief", sampling={"max_tokens": 4}
    )
    reply = "".join(session.send("hello"))
    assert session.history() == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": reply.strip()},
    ]
    "".join(session.send("and then?"))
    assert len(session.messages) == 4
    assert session.command("/reset") == "(conversation cleared)" and session.messages == []
    assert session.command("/system") and session.system is None
    assert session.command("/exit") is None


def test_repl_reads_until_exit(tiny_model_dir):
    session = ChatSession(lmforge.load(str(tiny_model_dir)), sampling={"max_tokens": 3})
    out = io.StringIO()
    session.repl(stdin=io.StringIO("hi\n\n/exit\nnot read\n"), stdout=out)
    assert len(session.messages) == 2  # one user turn, one reply; nothing after /exit
