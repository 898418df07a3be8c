"""Tests for cliproxy.http.codec: incremental, bounded gzip/deflate decoding."""

import gzip
import json
import zlib

import pytest

from cliproxy.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from cliproxy.http import codec
from cliproxy.http.codec import GZIP_MAGIC, Decoder, decode_body, is_gzip

BODY = json.dumps(
    {
        "model": "claude-opus-4-5-20251101",
        "messages": [{"role": "user", "content": "héllo " * 200}],
    }
).encode("utf-8")


def _raw_deflate(data):
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _decode_in_pieces(encoding, data, size, max_output=None):
    decoder = Decoder(encoding, max_output)
    out = [decoder.decompress(data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + decoder.flush()


ENCODED = {
    "gzip": gzip.compress(BODY),
    "x-gzip": gzip.compress(BODY),
    "deflate": zlib.compress(BODY),
    "raw-deflate": _raw_deflate(BODY),
}


def test_is_gzip_sniffs_the_magic_number():
    assert GZIP_MAGIC == b"\x1f\x8b"
    assert is_gzip(gzip.compress(b"x"))
    assert is_gzip(bytearray(b"\x1f\x8b\x08"))
    assert not is_gzip(b"\x1f")
    assert not is_gzip(b"")
    assert not is_gzip(b'{"a": 1}')


@pytest.mark.parametrize("kind", sorted(ENCODED))
@pytest.mark.parametrize("size", [1, 7, 1 << 16])
def test_round_trip_in_chunks(kind, size):
    encoding = "deflate" if kind == "raw-deflate" else kind
    assert _decode_in_pieces(encoding, ENCODED[kind], size) == BODY


def test_encoding_name_is_case_and_space_insensitive():
    assert decode_body(ENCODED["gzip"], " GZip ", len(BODY)) == BODY


def test_concatenated_gzip_members_all_decode():
    data = gzip.compress(b"first,") + gzip.compress(b"second,") + gzip.compress(b"third")
    assert _decode_in_pieces("gzip", data, 1) == b"first,second,third"
    assert decode_body(data, "gzip", 100) == b"first,second,third"


def test_zero_padding_after_last_gzip_member_is_ignored():
    assert decode_body(gzip.compress(b"abc") + b"\x00" * 10, "gzip", 100) == b"abc"


def test_trailing_garbage_after_gzip_member_is_bad_request():
    with pytest.raises(BadRequest, match="trailing garbage"):
        decode_body(gzip.compress(b"abc") + b"junk", "gzip", 100)


def test_lone_magic_byte_after_member_is_truncated():
    with pytest.raises(BadRequest, match="truncated"):
        decode_body(gzip.compress(b"abc") + b"\x1f", "gzip", 100)


@pytest.mark.parametrize("kind", sorted(ENCODED))
def test_truncated_body_raises_bad_request_at_flush(kind):
    encoding = "deflate" if kind == "raw-deflate" else kind
    decoder = Decoder(encoding)
    decoder.decompress(ENCODED[kind][:-6])  # stream stops mid-way (or mid-trailer)
    with pytest.raises(BadRequest, match="truncated"):
        decoder.flush()


def test_single_byte_deflate_body_is_truncated():
    decoder = Decoder("deflate")
    assert decoder.decompress(b"\x78") == b""
    with pytest.raises(BadRequest, match="truncated"):
        decoder.flush()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_corrupt_data_raises_bad_request(encoding):
    good = ENCODED[encoding]
    corrupt = good[:12] + bytes(b ^ 0xFF for b in good[12:40]) + good[40:]
    with pytest.raises(BadRequest, match="corrupt"):
        decode_body(corrupt, encoding, 10 * len(BODY))


def test_not_gzip_at_all_is_bad_request():
    with pytest.raises(BadRequest):
        decode_body(b'{"model": "x"}', "gzip", 1000)


def test_deflate_trailing_data_is_bad_request():
    with pytest.raises(BadRequest, match="trailing data"):
        decode_body(zlib.compress(b"abc") + b"more", "deflate", 100)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_bomb_is_bounded_and_raises_payload_too_large(encoding):
    compress = gzip.compress if encoding == "gzip" else zlib.compress
    bomb = compress(b"\x00" * (16 * 1024 * 1024))  # 16 MiB from about 16 KiB
    assert len(bomb) < 32 * 1024
    decoder = Decoder(encoding, max_output=1024 * 1024)
    produced = 0
    with pytest.raises(PayloadTooLarge):
        for offset in range(0, len(bomb), 4096):
            produced += len(decoder.decompress(bomb[offset : offset + 4096]))
    # never more than the limit came out (the raising call returned nothing)
    assert produced <= 1024 * 1024


def test_output_exactly_at_the_limit_is_allowed():
    assert decode_body(gzip.compress(b"a" * 1000), "gzip", 1000) == b"a" * 1000
    with pytest.raises(PayloadTooLarge):
        decode_body(gzip.compress(b"a" * 1001), "gzip", 1000)


def test_limit_counts_all_gzip_members():
    data = gzip.compress(b"a" * 600) + gzip.compress(b"b" * 600)
    with pytest.raises(PayloadTooLarge):
        decode_body(data, "gzip", 1000)


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip", "identity"])
def test_other_codings_are_unsupported_media_type(encoding):
    with pytest.raises(UnsupportedMediaType) as info:
        Decoder(encoding)
    assert info.value.status == 415


def test_decode_body_with_unknown_coding_is_415():
    with pytest.raises(UnsupportedMediaType):
        decode_body(b"x", "br", 100)


@pytest.mark.parametrize("encoding", ["", "identity", "IDENTITY"])
def test_identity_returns_data_unchanged(encoding):
    assert decode_body(b"plain bytes", encoding, 1) == b"plain bytes"


def test_empty_body_decodes_to_empty():
    assert decode_body(b"", "gzip", 10) == b""
    assert Decoder("deflate").flush() == b""


@pytest.mark.parametrize(
    "encoding", ["gzip", "x-gzip", "deflate", "", "identity", " GZIP ", "Deflate", "x-Gzip\t", "br"]
)
def test_normalised_names_skip_the_string_methods_with_the_same_result(encoding):
    assert codec._normalise(encoding) == encoding.strip().lower()
