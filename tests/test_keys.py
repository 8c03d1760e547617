"""The one decoding of keys from the raw request path (api/keys.py) and the spellings that
keep a key byte for byte through every hop (client, forwarder)."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from beaver_vault.api.forward import same_path
from beaver_vault.api.keys import (
    decode_key_bytes,
    exact_forward_path,
    key_from_path,
    percent_decode,
    quote_key,
)
from beaver_vault.api.validation import BadInput
from beaver_vault.client._core import kv_path

EXACT = ["a/./b", "a/../b", "..", ".", "a//b", "a/", "/", "a%2Fb", "café", "cafe\u0301", "😀", "a+b", "a b", "?#"]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"a/./b", "a/./b"),
        (b"a/../b", "a/../b"),
        (b"a//b/", "a//b/"),
        (b"a%2Fb", "a/b"),
        (b"a%2fb", "a/b"),
        (b"%2E%2E", ".."),
        (b"caf%C3%A9", "café"),
        (b"cafe%CC%81", "cafe\u0301"),  # NFD stays NFD
        (b"a+b", "a+b"),
        (b"%25zz", "%zz"),
    ],
)
def test_decodes_exactly(raw: bytes, key: str) -> None:
    assert decode_key_bytes(raw) == key


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"%zz", "invalid percent-encoding"),
        (b"a%", "invalid percent-encoding"),
        (b"%G1", "invalid percent-encoding"),
        (b"%4", "invalid percent-encoding"),
        (b"%FE", "not valid UTF-8"),
        (b"%FF", "not valid UTF-8"),
        (b"%ED%A0%80", "not valid UTF-8"),  # a lone surrogate, UTF-8 encoded
        (b"%C0%AF", "not valid UTF-8"),  # overlong "/"
        (b"%01", "control character U+0001"),
        (b"a%0Ab", "control character U+000A"),
        (b"%1B", "control character U+001B"),
        (b"%7F", "control character U+007F"),
        (b"%C2%85", "control character U+0085"),
    ],
)
def test_refuses_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadInput, match=re.escape(reason)):
        decode_key_bytes(raw)


def test_path_prefix_must_be_literal() -> None:
    assert key_from_path(b"/api/v1/kv/a/b") == "a/b"
    with pytest.raises(BadInput, match="spelled literally"):
        key_from_path(b"/api/v1/kv%2Fa")


@given(st.binary(max_size=40))
def test_percent_decoding_inverts_quoting(data: bytes) -> None:
    assert percent_decode(quote(data, safe="/").encode("ascii")) == data


keys = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")),  # what a key may hold
    min_size=1,
    max_size=30,
)


@given(keys)
def test_client_and_server_spellings_round_trip(key: str) -> None:
    for spelled in (quote_key(key), kv_path(key).removeprefix("/api/v1/kv/")):
        assert decode_key_bytes(spelled.encode("ascii")) == key
        # httpx keeps the spelling byte for byte (no dot-segment removal, no re-quoting).
        url = httpx.URL("http://127.0.0.1:1").copy_with(raw_path=b"/api/v1/kv/" + spelled.encode("ascii"))
        assert key_from_path(url.raw_path) == key


@pytest.mark.parametrize("key", EXACT)
def test_forwarded_paths_decode_the_same(key: str) -> None:
    raw = ("/api/v1/kv/" + quote(key, safe="/")).encode("ascii")
    sent = exact_forward_path(raw)
    url = httpx.URL("http://127.0.0.1:1").copy_with(raw_path=sent)
    assert same_path(url.raw_path, raw)
    assert key_from_path(url.raw_path) == key


def test_dot_segments_would_be_lost_without_the_escape() -> None:
    # Why the forwarder spells dot segments %2E: httpx removes them otherwise.
    url = httpx.URL("http://127.0.0.1:1").copy_with(raw_path=b"/api/v1/kv/a/../b")
    assert url.raw_path == b"/api/v1/kv/b"
    assert exact_forward_path(b"/api/v1/kv/a/../b") == b"/api/v1/kv/a/%2E%2E/b"
