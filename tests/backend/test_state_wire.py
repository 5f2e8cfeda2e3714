"""The request-head parser, the chunked decoders and the limit options, on their own (fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backend.errors import EntityTooLarge, IncompleteBody, InvalidRequest, S3Error
from backend.http.bodies import ChunkDecoder
from backend.http.wire import RequestHead, check_target, parse_head, parse_query, split_path
from backend.limits import MIB


def head(text: str) -> RequestHead:
    return parse_head(text.encode())


def test_a_plain_head_parses_with_framing_and_keep_alive() -> None:
    parsed = head(
        "PUT /b/k?x-id=PutObject HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\n"
        "Expect: 100-Continue\r\nX-Amz-Meta-A:  spaced \r\nX-Amz-Meta-A: twice"
    )
    assert (parsed.method, parsed.path, parsed.query) == ("PUT", "/b/k", "x-id=PutObject")
    assert (parsed.content_length, parsed.chunked) == (5, False)
    assert parsed.keep_alive and parsed.expect_continue
    assert parsed.headers.get_all("x-amz-meta-a") == ["spaced", "twice"]
    assert not head("GET / HTTP/1.1\r\nConnection: close").keep_alive
    assert not head("GET / HTTP/1.0\r\nHost: h").keep_alive
    assert head("PUT /b/k HTTP/1.1\r\nTransfer-Encoding: Chunked").chunked


@pytest.mark.parametrize(
    "text",
    [
        "GET / HTTP/2.0",
        "GET  / HTTP/1.1",
        "get / HTTP/1.1",
        "GET / HTTP/1.1\r\nContent-Length: +5",
        "GET / HTTP/1.1\r\nContent-Length: 5 5",
        "GET / HTTP/1.1\r\nContent-Length: \u0665",
        "GET / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
        "GET / HTTP/1.1\r\n: empty name",
        "GET / HTTP/1.1\r\nNo-Colon",
        "GET / HTTP/1.1\r\nX-A: \x7f",
        "GET / HTTP/1.1\r\nX-A: a\nb",
        "GET / HTTP/1.1" + "\r\nX-Many: 1" * 101,
    ],
)
def test_malformed_heads_raise_a_4xx(text: str) -> None:
    with pytest.raises(S3Error) as caught:
        head(text)
    assert 400 <= caught.value.status < 500


@pytest.mark.parametrize(
    "target",
    ["/b/k#x", "/b/k%", "/b/k%2", "/b/%GG", "/b/k k", '/b/"k"', "/b/k?a=<b>", "http://h/b/k", "*"],
)
def test_targets_the_signature_could_read_differently_are_refused(target: str) -> None:
    with pytest.raises(InvalidRequest):
        check_target(head(f"GET {target} HTTP/1.1"))


def test_the_router_decodes_exactly_once() -> None:
    check_target(head("GET /b/env%3A/a%2525b?prefix=env%3A%2F&list-type=2 HTTP/1.1"))
    assert split_path("/b/env%3A/a%2525b") == ("b", "env:/a%25b")
    assert parse_query("prefix=env%3A%2F&versions") == [("prefix", "env:/"), ("versions", "")]
    for bad in ("a=1&a=2", "p=%ff"):
        with pytest.raises(S3Error):
            parse_query(bad)
    with pytest.raises(S3Error):
        split_path("//key-without-bucket")


def _decode(raw: bytes, *, aws: bool, step: int) -> tuple[bytes, dict[str, str], int]:
    out = bytearray()
    decoder = ChunkDecoder(out.extend, limit=1000, aws=aws)
    used = 0
    for start in range(0, len(raw), step):
        piece = raw[start : start + step]
        n = decoder.feed(piece)
        used += n
        if n < len(piece):
            break
    if aws:
        decoder.end_of_input()
    assert decoder.done
    return bytes(out), decoder.trailers, used


@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_chunked_decoding_does_not_depend_on_how_bytes_arrive(step: int) -> None:
    raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    assert _decode(raw + b"NEXT", aws=False, step=step) == (b"hello world", {}, len(raw))
    body, trailers, _ = _decode(raw, aws=True, step=step)
    assert (body, trailers) == (b"hello world", {"x-amz-checksum-crc32": "AAAAAA=="})


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"zz\r\n", IncompleteBody),
        (b"5\r\nhelloX\r\n", IncompleteBody),
        (b"5\nhello\r\n", IncompleteBody),
        (b"3e9\r\n", EntityTooLarge),
        (b"5;chunk-signature=ab\r\nhello\r\n", InvalidRequest),
    ],
)
def test_bad_chunk_framing_is_refused(raw: bytes, error: type[S3Error]) -> None:
    with pytest.raises(error):
        ChunkDecoder(lambda data: None, limit=1000, aws=True).feed(raw)


# -- serve options for every limit ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-connections", "0"], "--max-connections must be at least 1"),
        (["--body-min-rate", "12XB"], "--body-min-rate: '12XB' is not a size"),
        (["--header-timeout", "soon"], "--header-timeout: 'soon' is not a number"),
    ],
)
def test_limit_options_name_the_bad_flag(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--data", str(tmp_path / "d"), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"error: {message}") and done.stderr.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_limit_options_parse_sizes_and_durations() -> None:
    from backend.serve import BadOption, limits_from_options, parse_size

    assert [parse_size(t) for t in ("4096", "256KiB", "64MiB", "1GiB", "1.5KiB")] == [
        4096,
        256 * 1024,
        64 * MIB,
        1024 * MIB,
        1536,
    ]
    limits = limits_from_options(
        max_connections="8", idle_timeout="2.5", max_object_size="1MiB", retain="3", body_grace="0"
    )
    assert (limits.max_connections, limits.idle_timeout, limits.max_object_bytes) == (8, 2.5, MIB)
    assert (limits.retain_versions, limits.body_grace) == (3, 0.0)
    with pytest.raises(BadOption, match="--retain-days must be greater than 0"):
        limits_from_options(retain_days="0")
