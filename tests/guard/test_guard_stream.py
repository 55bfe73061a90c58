"""The streaming redactor masks exactly what one-shot redaction masks, however split."""

import pytest

from lmforge.guard import Guard, GuardPolicy, StreamRedactor, check_output

TEXTS = [
    "Call me on 415-555-0132 tonight.",
    "Numbers: +44 7700 900123, (212) 555-0187 and 020 7946 0321",
    "Write to ana.b@example.co.uk or card 4111 1111 1111 1111.",
    "IBAN GB82 WEST 1234 5698 7654 32 THANKS, from 203.0.113.9",
    "Hello, my name is Ada Lovelace and I'm Grace Hopper.",
    "No personal data here, just words and 3.14 and 10:30.",
    "2001:db8::1 then 415.555.0199",
]


def stream(text, cuts, policy="pii=redact"):
    redactor = StreamRedactor(GuardPolicy.parse(policy))
    pieces, at = [], 0
    for cut in [*cuts, len(text)]:
        pieces.append(redactor.feed(text[at:cut]))
        at = cut
    pieces.append(redactor.flush())
    return "".join(pieces), redactor


@pytest.mark.parametrize("text", TEXTS)
def test_split_at_every_position(text):
    expected = check_output(text, "pii=redact").text
    for cut in range(len(text) + 1):
        out, _ = stream(text, [cut])
        assert out == expected, (cut, text[:cut], text[cut:])


@pytest.mark.parametrize("text", TEXTS)
def test_one_character_at_a_time(text):
    out, redactor = stream(text, list(range(1, len(text))))
    assert out == check_output(text, "pii=redact").text
    assert [f.kind for f in redactor.findings] == [
        f.kind for f in check_output(text, "pii=redact").findings
    ]


def test_phone_split_across_deltas_never_leaks():
    text = "my number is 415-555-0132, thanks"
    for cut in range(len(text) + 1):
        redactor = StreamRedactor(GuardPolicy(pii="redact"))
        first = redactor.feed(text[:cut])
        assert not any(ch.isdigit() for ch in first)


def test_only_the_tail_is_held_back():
    redactor = StreamRedactor(GuardPolicy(pii="redact"))
    assert redactor.feed("The answer is simple. Call ") == "The answer is simple. Call "
    assert redactor.feed("415-555") == ""
    assert redactor.feed("-0132 now") == "[PHONE] "
    assert redactor.flush() == "now"


def test_block_stops_the_stream_and_guard_counts_it():
    guard = Guard("pii=block")
    redactor = guard.output_stream()
    out = redactor.feed("fine so far. Mail me at bob@") + redactor.feed("example.com please")
    assert out == "fine so far. Mail me at " and redactor.blocked
    assert redactor.feed("more") == ""
    redactor.flush()
    assert redactor.decision.action == "block"
    assert guard.counts == {("output", "block"): 1}


def test_off_and_flag_pass_through():
    for policy in ("off", "pii=flag"):
        redactor = StreamRedactor(GuardPolicy.parse(policy))
        assert redactor.feed("call 415-") == "call 415-"
        assert redactor.feed("555-0132") == "555-0132"
        redactor.flush()
    assert redactor.decision.action == "flag"


def test_toxic_sentence_is_redacted_in_a_stream():
    redactor = StreamRedactor(GuardPolicy(toxicity="redact"))
    text = "Here is the plan. You are a worthless idiot and everyone hates you. Bye."
    out = "".join(redactor.feed(text[i : i + 5]) for i in range(0, len(text), 5)) + redactor.flush()
    assert "[TOXIC]" in out and "idiot" not in out and out.startswith("Here is the plan.")
