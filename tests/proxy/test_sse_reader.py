"""The sans-I/O SSE reader, fed real streams split at every byte offset."""

from __future__ import annotations

import msgspec
import pytest

from proxy.sse import SSEReader


def chunk(payload: object) -> bytes:
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def content(text: str, index: int = 0) -> bytes:
    return chunk({"choices": [{"index": index, "delta": {"content": text}}], "usage": None})


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
STREAM = (
    content("Hel")
    + content("lo")
    + content(" you", index=1)
    + chunk({"choices": [], "usage": USAGE})
    + b"data: [DONE]\n\n"
)


def read(stream: bytes, split: int, *, strip: bool) -> tuple[bytes, SSEReader]:
    reader = SSEReader(strip_usage=strip)
    out = reader.feed(stream[:split]) + reader.feed(stream[split:])
    return out + reader.tail(), reader


@pytest.mark.parametrize("strip", [True, False])
def test_every_split_point_gives_the_same_result(strip: bool) -> None:
    expected, _ = read(STREAM, 0, strip=strip)
    for split in range(len(STREAM) + 1):
        out, reader = read(STREAM, split, strip=strip)
        assert out == expected, split
        usage = reader.usage()
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (9, 3)
        assert reader.texts() == ["Hello", " you"]
        assert reader.done


def test_usage_chunk_is_stripped_for_clients_that_did_not_ask() -> None:
    out, _ = read(STREAM, 10, strip=True)
    assert b'"choices":[]' not in out
    assert out.endswith(b"data: [DONE]\n\n")
    out, _ = read(STREAM, 10, strip=False)
    assert out.count(b'"prompt_tokens":9') == 1


def test_usage_on_a_chunk_with_choices_is_removed_not_the_chunk() -> None:
    stream = chunk({"choices": [{"index": 0, "delta": {"content": "x"}}], "usage": USAGE})
    out, reader = read(stream, 5, strip=True)
    assert msgspec.json.decode(out.removeprefix(b"data: ")) == {
        "choices": [{"index": 0, "delta": {"content": "x"}}]
    }
    assert reader.usage() is not None


def test_cumulative_usage_takes_the_last_never_a_sum() -> None:
    stream = b"".join(
        chunk(
            {
                "choices": [{"index": 0, "delta": {"content": "w"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n},
            }
        )
        for n in range(1, 5)
    )
    _, reader = read(stream, 7, strip=True)
    usage = reader.usage()
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 4)


def test_repeated_usage_chunk_reaches_an_asking_client_once_the_last_one() -> None:
    # One upstream sends cached_tokens in a second usage-only frame (openai-usage.md 2.5):
    # the client gets that last frame once, and it is what is metered.
    later = {**USAGE, "prompt_tokens_details": {"cached_tokens": 4}}
    stream = (
        content("a")
        + chunk({"choices": [], "usage": USAGE})
        + chunk({"choices": [], "usage": later})
        + b"data: [DONE]\n\n"
    )
    for split in range(len(stream) + 1):
        out, reader = read(stream, split, strip=False)
        assert out.count(b'"prompt_tokens":9') == 1
        assert out.endswith(chunk({"choices": [], "usage": later}) + b"data: [DONE]\n\n")
        usage = reader.usage()
        assert usage is not None
        assert usage.cached_tokens == 4
        stripped, _ = read(stream, split, strip=True)
        assert stripped == content("a") + b"data: [DONE]\n\n"


def test_malformed_lines_are_dropped_and_counted_and_crlf_works() -> None:
    stream = b"data: {not json\r\n\r\n" + content("ok").replace(b"\n", b"\r\n")
    out, reader = read(stream, 4, strip=True)
    assert reader.malformed == 1
    assert b"{not json" not in out
    assert b'"ok"' in out
    assert reader.texts() == ["ok"]


def test_responses_terminal_event_carries_usage() -> None:
    usage = {"input_tokens": 7, "output_tokens": 2, "total_tokens": 9}
    stream = (
        b"event: response.output_text.delta\n"
        + chunk({"type": "response.output_text.delta", "delta": "hi"})
        + b"event: response.completed\n"
        + chunk({"type": "response.completed", "response": {"usage": usage}})
    )
    _, reader = read(stream, 11, strip=True)
    found = reader.usage()
    assert found is not None
    assert (found.prompt_tokens, found.completion_tokens) == (7, 2)
    assert reader.texts() == ["hi"]


@pytest.mark.parametrize("terminal", ["response.incomplete", "response.failed"])
def test_responses_incomplete_and_failed_terminals_carry_usage(terminal: str) -> None:
    usage = {"input_tokens": 5, "output_tokens": 4, "total_tokens": 9}
    stream = (
        b"event: response.created\n"
        + chunk({"type": "response.created", "response": {"usage": None}})
        + b"event: response.output_text.delta\n"
        + chunk({"type": "response.output_text.delta", "delta": "cut"})
        + f"event: {terminal}\n".encode()
        + chunk({"type": terminal, "response": {"usage": usage}})
    )
    for split in range(len(stream) + 1):
        out, reader = read(stream, split, strip=True)
        assert out == stream  # Responses streams are forwarded whole; the terminal with the tail
        found = reader.usage()
        assert found is not None
        assert (found.prompt_tokens, found.completion_tokens) == (5, 4)
        assert reader.done


def test_several_choices_keep_their_own_text_and_one_usage() -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    stream = (
        content("a", index=0)
        + content("x", index=1)
        + content("b", index=0)
        + content("y", index=1)
        + chunk({"choices": [], "usage": usage})
        + b"data: [DONE]\n\n"
    )
    out, reader = read(stream, 17, strip=False)
    assert reader.texts() == ["ab", "xy"]  # per choice, for the fallback's count
    assert out.count(b'"usage":{') == 1


def test_content_chunks_go_out_as_the_upstream_sent_them() -> None:
    # Spacing, key order and unknown fields are the upstream's: nothing is re-encoded.
    stream = (
        b'data: {"choices": [ {"index": 0, "delta": {"content": "a"}, "x": [1, 2.50]} ],'
        b' "usage" :  null, "weird": {"k": "v"}}\n\n' + content("b") + b"data: [DONE]\n\n"
    )
    for strip in (True, False):
        for split in range(len(stream) + 1):
            out, reader = read(stream, split, strip=strip)
            assert out == stream
            assert reader.texts() == ["ab"]
            assert reader.usage() is None


def test_usage_is_found_however_it_is_spaced_and_whatever_the_text_says() -> None:
    text = 'he said "usage": {"prompt_tokens": 1} and "response.completed"'
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    spaced = b'data: {"choices": [], "usage" : ' + msgspec.json.encode(usage) + b"}\n\n"
    stream = content(text) + spaced + b"data: [DONE]\n\n"
    for split in range(len(stream) + 1):
        out, reader = read(stream, split, strip=True)
        assert out == content(text) + b"data: [DONE]\n\n"
        found = reader.usage()
        assert found is not None
        assert (found.prompt_tokens, found.completion_tokens) == (5, 1)
        assert reader.texts() == [text]
