"""The Label Studio token never reaches a message: checked before use, scrubbed from whatever a
library or the server says (no server: the HTTP session is stubbed)."""

from __future__ import annotations

import pytest
import requests

from risbench_builder.config import ReviewConfig
from risbench_builder.review import LabelStudio, ReviewError
from risbench_builder.review.client import check_token, scrub

TOKEN = "0123456789abcdef0123456789abcdef01234567"
URL = "http://127.0.0.1:9"


@pytest.mark.parametrize("bad", [f"{TOKEN[:20]} {TOKEN[20:]}", f"{TOKEN[:20]}\t{TOKEN[20:]}",
                                 f"{TOKEN[:20]}\n{TOKEN[20:]}", f"{TOKEN[:20]}\x07{TOKEN[20:]}",
                                 f"{TOKEN[:20]}\x1b[0m{TOKEN[20:]}", f"{TOKEN[:20]}\u00a0{TOKEN[20:]}",
                                 f"{TOKEN[:20]}\u200b{TOKEN[20:]}"])
def test_a_token_holding_whitespace_or_control_characters_is_one_line(bad: str, monkeypatch) -> None:
    monkeypatch.setenv("MY_LS_TOKEN", f"  {bad}\n")
    with pytest.raises(ReviewError) as caught:
        LabelStudio.from_config(ReviewConfig(url=URL, token_env="MY_LS_TOKEN"))
    message = str(caught.value)
    assert message.startswith("the token in MY_LS_TOKEN holds whitespace")
    assert "\n" not in message and TOKEN[:20] not in message and TOKEN[20:] not in message
    with pytest.raises(ReviewError, match="^the token in LABEL_STUDIO_API_KEY holds whitespace"):
        LabelStudio(URL, bad)


def test_the_token_is_stripped_and_checked(monkeypatch) -> None:
    monkeypatch.setenv("MY_LS_TOKEN", f"\t {TOKEN} \r\n")
    client = LabelStudio.from_config(ReviewConfig(url=URL, token_env="MY_LS_TOKEN"))
    assert client._token == TOKEN and TOKEN not in repr(client)
    assert check_token(f" {TOKEN}\n", "X") == TOKEN
    with pytest.raises(ReviewError, match="^the token in X holds whitespace"):
        check_token(TOKEN[:20] + "\x00" + TOKEN[20:], "X")
    for empty in ("", "  \n", None):
        with pytest.raises(ReviewError, match="set the environment variable X"):
            check_token(empty, "X")
    with pytest.raises(ReviewError, match="^the token in X holds characters that are not ASCII") as caught:
        check_token(TOKEN + "é", "X")
    assert TOKEN not in str(caught.value)


def test_scrub_removes_tokens_and_authorization_values() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
    cases = [
        f"Invalid header value b'Token {TOKEN}'",
        f"{{'Authorization': 'Token {TOKEN}', 'Accept': '*/*'}}",
        f"authorization={TOKEN}",
        f"Bearer {jwt}",
        f"refresh {jwt} expired",
        f'{{"access": "{jwt}"}}',
        f"Token {TOKEN[:10]}",
    ]
    for text in cases:
        out = scrub(text, TOKEN)
        assert "***" in out and TOKEN[:10] not in out and jwt[:20] not in out, out
    assert scrub("the token in X holds whitespace\nnext line") == "the token in X holds whitespace next line"
    assert scrub(f"a {TOKEN} b", TOKEN, None) == "a *** b"
    assert len(scrub("x" * 5000)) == 300


class _Stub:
    """Stands in for ``requests.Session.request``: raise ``exc`` or answer ``status`` with ``body``."""

    def __init__(self, exc: BaseException | None = None, status: int = 200, body: bytes = b"{}"):
        self.exc, self.status, self.body = exc, status, body
        self.headers: list[dict] = []

    def __call__(self, method, url, **kw) -> requests.Response:
        self.headers.append(kw.get("headers") or {})
        if self.exc is not None:
            raise self.exc
        resp = requests.Response()
        resp.status_code, resp._content, resp.url = self.status, self.body, url
        return resp


@pytest.mark.parametrize("exc", [
    requests.exceptions.InvalidHeader(f"Invalid return character or leading space in header: Authorization "
                                      f"'Token {TOKEN}'"),
    requests.exceptions.ConnectionError(f"HTTPConnectionPool: headers={{'Authorization': 'Token {TOKEN}'}}"),
    requests.exceptions.TooManyRedirects(f"Exceeded 30 redirects with Token {TOKEN}"),
    requests.exceptions.ChunkedEncodingError(f"Connection broken: {TOKEN}"),
    requests.exceptions.ReadTimeout(f"read timed out; Authorization: Token {TOKEN}"),
])
def test_library_errors_become_one_scrubbed_line(exc: BaseException, monkeypatch) -> None:
    client = LabelStudio(URL, TOKEN)
    stub = _Stub(exc)
    monkeypatch.setattr(client._session, "request", stub)
    monkeypatch.setattr("time.sleep", lambda s: None)
    with pytest.raises(ReviewError) as caught:
        client.get("/api/projects/")
    message = str(caught.value)
    assert TOKEN not in message and TOKEN[:8] not in message and "\n" not in message
    assert stub.headers[0] == {"Authorization": f"Token {TOKEN}"}        # it was sent, just never shown


def test_server_answers_are_scrubbed(monkeypatch) -> None:
    client = LabelStudio(URL, TOKEN)
    echo = f"<html>bad gateway\nAuthorization: Token {TOKEN}\nX-Seen: {TOKEN}</html>".encode()
    monkeypatch.setattr(client._session, "request", _Stub(status=502, body=echo))
    with pytest.raises(ReviewError, match="HTTP 502") as caught:
        client.get("/api/projects/")
    assert TOKEN not in str(caught.value) and "\n" not in str(caught.value)
    monkeypatch.setattr(client._session, "request", _Stub(status=200, body=b"<html>not json " + TOKEN.encode()))
    with pytest.raises(ReviewError, match="not JSON") as caught:
        client.get("/api/projects/")
    assert TOKEN not in str(caught.value)
    monkeypatch.setattr(client._session, "request", _Stub(body=b"[" * 100_000 + b"]" * 100_000))
    with pytest.raises(ReviewError, match="nested deeper"):
        client.get("/api/tasks/")
    monkeypatch.setattr(client._session, "request", _Stub(status=401))
    with pytest.raises(ReviewError, match="rejected the token in \\$LABEL_STUDIO_API_KEY") as caught:
        client.get("/api/projects/")
    assert TOKEN not in str(caught.value)


def test_a_refresh_without_an_access_token_is_one_line(monkeypatch) -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
    client = LabelStudio(URL, jwt)
    for body in (b'{"detail": "nope"}', b'{"access": "a b"}', b"[1]"):
        monkeypatch.setattr(client._session, "request", _Stub(body=body))
        with pytest.raises(ReviewError, match="access token") as caught:
            client.get("/api/projects/")
        assert jwt not in str(caught.value) and jwt[:20] not in str(caught.value)
