"""Training data: loss masks per format, truncation, split, packing that keeps examples apart, errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from lmforge.errors import InvalidInputError, NotFoundError
from lmforge.tune.data import (
    IGNORE,
    Example,
    additive_mask,
    collate,
    detect_format,
    pack,
    read_examples,
    split,
)

SYSTEM = "Be brief."
USER_1, ANSWER_1 = "What is the capital of France?", "Paris is the capital of France."
USER_2, ANSWER_2 = "And of Italy?", "Rome."
CHAT = {
    "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": USER_1},
        {"role": "assistant", "content": ANSWER_1},
        {"role": "user", "content": USER_2},
        {"role": "assistant", "content": ANSWER_2},
    ]
}


def _jsonl(path: Path, *records: object) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _supervised(tokenizer, ex: Example) -> str:
    """The text of the tokens that carry a loss."""
    return tokenizer.decode(
        [t for t, label in zip(ex.input_ids, ex.labels, strict=True) if label != IGNORE]
    )


def _check_labels(ex: Example) -> None:
    """Labels line up with the ids, and the first token never carries a loss."""
    assert len(ex.labels) == len(ex.input_ids)
    assert ex.labels[0] == IGNORE
    assert all(label in (IGNORE, t) for t, label in zip(ex.input_ids, ex.labels, strict=True))


# -- loss masks ----------------------------------------------------------------------------


def test_chat_loss_covers_exactly_the_assistant_turns(tmp_path, tiny_tokenizer) -> None:
    path = _jsonl(tmp_path / "chat.jsonl", CHAT)
    examples, stats = read_examples(path, tiny_tokenizer, max_len=512)
    (ex,) = examples
    _check_labels(ex)
    assert stats.format == "chat" and stats.examples == 1
    assert stats.supervised == sum(label != IGNORE for label in ex.labels)
    # The two replies with the end-of-turn the template writes after each, nothing else.
    assert _supervised(tiny_tokenizer, ex) == f"{ANSWER_1}<|im_end|>\n{ANSWER_2}<|im_end|>\n"
    # ... and the ids are the full rendering, of which the unsupervised part holds the rest.
    full = tiny_tokenizer.apply_chat_template(CHAT["messages"], tokenize=False)
    assert tiny_tokenizer.decode(ex.input_ids) == full
    unsupervised = tiny_tokenizer.decode(
        [t for t, label in zip(ex.input_ids, ex.labels, strict=True) if label == IGNORE]
    )
    for text in (SYSTEM, USER_1, USER_2, "<|im_start|>assistant\n"):
        assert text in unsupervised


def test_instruction_loss_on_completion_and_eos(tmp_path, tiny_tokenizer) -> None:
    records = [
        {"prompt": "Q: What is the capital of France?\nA:", "completion": " Paris."},
        {"prompt": "Say hello: ", "completion": "hello"},  # a space at the boundary
    ]
    examples, stats = read_examples(_jsonl(tmp_path / "i.jsonl", *records), tiny_tokenizer, 512)
    assert stats.format == "instruction" and stats.examples == 2
    eos = tiny_tokenizer.eos_token_id
    for ex, record in zip(examples, records, strict=True):
        _check_labels(ex)
        assert ex.input_ids[-1] == eos and ex.labels[-1] == eos
        assert (
            tiny_tokenizer.decode(ex.input_ids)
            == record["prompt"] + record["completion"] + "<|im_end|>"
        )
        supervised = _supervised(tiny_tokenizer, ex)
        # The completion (plus at most a boundary token's share of the prompt) and eos.
        assert supervised.endswith(record["completion"] + "<|im_end|>")
        assert len(supervised) <= len(record["completion"] + "<|im_end|>") + 1
    assert _supervised(tiny_tokenizer, examples[0]) == " Paris.<|im_end|>"


def test_text_file_paragraphs_and_jsonl_text(tmp_path, tiny_tokenizer) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("The quick brown fox\njumps over the lazy dog.\n\n\n  \nRome is in Italy.\n")
    jsonl = _jsonl(tmp_path / "t.jsonl", {"text": "The quick brown fox\njumps over the lazy dog."})
    assert detect_format(txt) == detect_format(jsonl) == "text"
    from_txt, stats = read_examples(txt, tiny_tokenizer, 512)
    from_jsonl, _ = read_examples(jsonl, tiny_tokenizer, 512)
    assert stats.format == "text" and stats.examples == 2
    assert from_txt[0] == from_jsonl[0]
    eos = tiny_tokenizer.eos_token_id
    for ex in from_txt:
        _check_labels(ex)
        assert ex.input_ids[-1] == eos
        assert ex.labels[1:] == ex.input_ids[1:]  # every token but the first
    assert tiny_tokenizer.decode(from_txt[1].input_ids) == "Rome is in Italy.<|im_end|>"


def test_auto_detects_each_format(tmp_path) -> None:
    assert detect_format(_jsonl(tmp_path / "a.jsonl", CHAT)) == "chat"
    assert (
        detect_format(_jsonl(tmp_path / "b.jsonl", {"prompt": "a", "completion": "b"}))
        == "instruction"
    )
    assert detect_format(_jsonl(tmp_path / "c.jsonl", {"text": "a", "id": 7})) == "text"


# -- truncation ----------------------------------------------------------------------------


def test_truncation_and_drops_are_counted(tmp_path, tiny_tokenizer) -> None:
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 4
    records = [
        {"prompt": "Hi", "completion": " Paris."},  # short: kept whole
        {"prompt": "Hi", "completion": " " + long_prompt},  # cut, but keeps supervised tokens
        {"prompt": long_prompt, "completion": " Rome."},  # cut inside the prompt: dropped
    ]
    examples, stats = read_examples(_jsonl(tmp_path / "i.jsonl", *records), tiny_tokenizer, 12)
    assert (stats.examples, stats.truncated, stats.dropped) == (2, 1, 1)
    assert max(len(ex.input_ids) for ex in examples) == 12
    assert stats.tokens == sum(len(ex.input_ids) for ex in examples)
    assert stats.supervised == sum(label != IGNORE for ex in examples for label in ex.labels)
    with pytest.raises(InvalidInputError, match="no usable examples"):
        read_examples(_jsonl(tmp_path / "j.jsonl", records[2]), tiny_tokenizer, 12)


# -- split ---------------------------------------------------------------------------------


def _numbered(n: int) -> list[Example]:
    return [Example([i, i + 1], [IGNORE, i + 1]) for i in range(n)]


def test_split_is_deterministic_and_disjoint() -> None:
    examples = _numbered(50)
    train, held = split(examples, eval_fraction=0.2, seed=3)
    assert len(held) == 10 and len(train) == 40
    assert sorted([ex.input_ids[0] for ex in train + held]) == list(range(50))
    assert split(examples, 0.2, seed=3) == (train, held)
    assert split(examples, 0.2, seed=4) != (train, held)
    assert split(_numbered(2), 0.01)[1] != []  # at least one held out
    assert split(_numbered(1), 0.5) == (_numbered(1), [])
    assert split(examples, 0.0) == (examples, [])


# -- pack and collate ----------------------------------------------------------------------


def test_pack_first_fit_in_order() -> None:
    sizes = [6, 5, 3, 2, 12, 4]
    examples = [Example(list(range(n)), [IGNORE] * n) for n in sizes]
    groups = pack(examples, seq_len=10)
    assert [[len(ex.input_ids) for ex in g] for g in groups] == [[6, 3], [5, 2], [12], [4]]
    assert pack(examples, 10) == groups


def test_collate_one_example_per_row_is_plain_padding() -> None:
    a, b = Example([5, 6, 7], [IGNORE, 6, 7]), Example([8, 9], [IGNORE, 9])
    batch = collate([[a], [b]], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch.labels.tolist() == [[IGNORE, 6, 7], [IGNORE, 9, IGNORE]]
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 1, 0]]
    assert (batch.tokens, batch.supervised) == (5, 3)
    assert batch.attention_mask.shape == (2, 1, 3, 3)
    assert batch.attention_mask[0, 0].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert batch.attention_mask[1, 0].tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_examples_match_running_alone(tmp_path, tiny_tokenizer, model_factory, attn) -> None:
    path = _jsonl(
        tmp_path / "chat.jsonl",
        CHAT,
        {
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "Hi."},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": USER_2},
                {"role": "assistant", "content": ANSWER_2},
            ]
        },
    )
    examples, _ = read_examples(path, tiny_tokenizer, 512)
    groups = pack(examples, seq_len=sum(len(ex.input_ids) for ex in examples[1:]))
    assert [len(g) for g in groups] == [1, 2]  # one long row, one packed row (padded)
    batch = collate(groups, pad_id=tiny_tokenizer.pad_token_id)
    model = model_factory(len(tiny_tokenizer), attn_implementation=attn)
    with torch.no_grad():
        logits = model(
            batch.input_ids,
            attention_mask=additive_mask(batch.attention_mask, torch.float32),
            position_ids=batch.position_ids,
        ).logits  # (B, T, vocab)
        assert torch.isfinite(logits).all()  # the padding rows too
        for row, group in enumerate(groups):
            start = 0
            for ex in group:
                alone = model(torch.tensor([ex.input_ids])).logits[0]  # (T_ex, vocab)
                packed = logits[row, start : start + len(ex.input_ids)]
                torch.testing.assert_close(packed, alone, atol=1e-4, rtol=0)
                start += len(ex.input_ids)


# -- errors name the file and line -----------------------------------------------------------


def _error(path: Path, tokenizer, **kwargs) -> str:
    with pytest.raises(InvalidInputError) as info:
        read_examples(path, tokenizer, 64, **kwargs)
    return str(info.value)


def test_malformed_json_names_file_and_line(tmp_path, tiny_tokenizer) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(CHAT) + "\n\n{not json\n")
    assert f"{path}:3:" in _error(path, tiny_tokenizer)


@pytest.mark.parametrize(
    "record, message",
    [
        ([1, 2], "expected a JSON object"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant turn"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "unknown role 'robot'"),
        ({"messages": [{"role": "user", "content": 3}]}, "string 'content'"),
        ({"messages": []}, "non-empty list"),
        ({"prompt": "hi"}, "missing key 'completion'"),
        ({"prompt": "hi", "completion": ""}, "'completion' is empty"),
        ({"prompt": "hi", "completion": 5}, "must be a string"),
        ({"text": "a", "messages": []}, "keys of several formats"),
        ({"question": "hi"}, "none of the keys"),
        ({"text": "a stray text record"}, "format 'text' in a file of 'chat' data"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, tiny_tokenizer, record, message) -> None:
    first = {"prompt": "a", "completion": "b"} if "prompt" in record else CHAT
    path = _jsonl(tmp_path / "bad.jsonl", first, record)
    error = _error(path, tiny_tokenizer)
    assert f"{path}:2:" in error and message in error


def test_empty_and_missing_files(tmp_path, tiny_tokenizer) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    assert "the dataset is empty" in _error(empty, tiny_tokenizer)
    blank = tmp_path / "blank.txt"
    blank.write_text("")
    assert "the dataset is empty" in _error(blank, tiny_tokenizer)
    with pytest.raises(NotFoundError, match="no such file"):
        read_examples(tmp_path / "missing.jsonl", tiny_tokenizer, 64)


def test_template_that_rewrites_earlier_turns_is_refused(tmp_path, tiny_tokenizer) -> None:
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = (  # marks the last message: not stable under extension
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
        "{% if loop.last %} (last){% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    path = _jsonl(tmp_path / "chat.jsonl", CHAT)
    assert f"{path}:1:" in _error(path, tokenizer)
