"""The Integrate client against real local HTTP servers (uvicorn on 127.0.0.1, in a background thread)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from rejoinder.engine.types import HttpCall, HttpResponse
from rejoinder.integrations import IntegratePolicy, IntegrationClient, verify_signature
from rejoinder.integrations.transport import ServerNamePools
from rejoinder.skills.model import IntegrateSettings
from rejoinder.tokens import TokenRef, mint

LOCAL = IntegratePolicy(allow_hosts=("127.0.0.1",))

# ----------------------------------------------------------------------------------------------- the far end

hits: Counter[str] = Counter()
received: dict[str, dict[str, Any]] = {}  # what /record/{key} was sent, by key


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": dict(request.headers),
            "body": body.decode(),
        }
    )


async def record(request: Request) -> Response:
    """Keeps the request as it arrived, and answers with it (an echo of everything it was sent)."""
    seen = {
        "path": request.url.path,
        "query": dict(request.query_params),
        "headers": dict(request.headers),
        "body": (await request.body()).decode(),
    }
    received[request.path_params["key"]] = seen
    if request.query_params.get("as") == "text":
        return PlainTextResponse(json.dumps(seen))
    return JSONResponse(seen)


async def flaky(request: Request) -> Response:
    """Answers 500 for the first ``failures`` requests with this key, then 200."""
    key = request.path_params["key"]
    hits[key] += 1
    if hits[key] <= int(request.path_params["failures"]):
        return JSONResponse({"error": "boom"}, status_code=500)
    return JSONResponse({"ok": True, "hits": hits[key]})


async def status(request: Request) -> Response:
    hits[request.path_params["key"]] += 1
    code = int(request.path_params["code"])
    headers = (
        {"Retry-After": request.query_params["retry_after"]} if "retry_after" in request.query_params else {}
    )
    return JSONResponse({"status": code}, status_code=code, headers=headers)


async def hang(request: Request) -> Response:
    hits[request.path_params["key"]] += 1
    await asyncio.sleep(10)
    return PlainTextResponse("too late")


async def garbage(request: Request) -> Response:
    return Response(b"{not json", media_type="application/json")


async def text(request: Request) -> Response:
    return PlainTextResponse("plain words, not JSON")


async def profile(request: Request) -> Response:
    return JSONResponse({"login_url": "https://shop.test/login?t=1", "user": {"id": 7, "tags": ["a", "b"]}})


async def big(request: Request) -> Response:
    return PlainTextResponse("x" * int(request.query_params["n"]))


async def big_chunked(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(int(request.query_params["n"]) // 1000):
            yield b"y" * 1000

    return StreamingResponse(chunks(), media_type="text/plain")


async def redirect(request: Request) -> Response:
    return RedirectResponse(
        request.query_params["to"], status_code=int(request.query_params.get("code", "302"))
    )


async def loop(request: Request) -> Response:
    return RedirectResponse("/loop", status_code=302)


app = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/record/{key}/{rest:path}", record, methods=["GET", "POST"]),
        Route("/flaky/{key}/{failures}", flaky, methods=["GET", "POST"]),
        Route("/status/{key}/{code}", status, methods=["GET", "POST"]),
        Route("/hang/{key}", hang, methods=["GET", "POST"]),
        Route("/garbage", garbage),
        Route("/text", text),
        Route("/profile", profile, methods=["GET", "POST"]),
        Route("/big", big),
        Route("/big-chunked", big_chunked),
        Route("/redirect", redirect, methods=["GET", "POST"]),
        Route("/loop", loop),
    ]
)


class LocalServer:
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a background thread."""

    def __init__(self, **config: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = self.server.force_exit = True  # do not wait for the hanging handlers
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as running:
        yield running


@pytest.fixture
def base(server: LocalServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def client() -> AsyncIterator[IntegrationClient]:
    async with IntegrationClient() as integration:
        yield integration


def key() -> str:
    return uuid.uuid4().hex


def call(url: str, method: str = "GET", **fields: Any) -> HttpCall:
    return HttpCall(node_id="send_token", method=method, url=url, **fields)


def resolving(answers: dict[str, list[str]]) -> Any:
    """A resolver stub: never touches real DNS, so no name leaves this machine."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


# -------------------------------------------------------------------------------------- requests and answers


async def test_json_post_of_send_variables_arrives_with_body_and_headers(
    client: IntegrationClient, server: LocalServer, base: str
) -> None:
    sent = {"RESUME_TOKEN": "rjt_abc", "user_name": "Ana Müller"}
    response = await client.perform(
        call(
            f"{base}/echo", "POST", json_body=sent, headers={"Authorization": "Bearer k1", "X-Shop": "demo"}
        ),
        LOCAL,
    )
    assert response.ok and response.error is None
    seen = response.body
    assert seen["method"] == "POST"
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["authorization"] == "Bearer k1"
    assert seen["headers"]["x-shop"] == "demo"
    assert seen["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert seen["headers"]["user-agent"].startswith("rejoinder/")
    assert seen["body"] == '{"RESUME_TOKEN":"rjt_abc","user_name":"Ana Müller"}'
    assert "x-rejoinder-signature" not in seen["headers"]  # no secret, no signature
    assert response.elapsed_ms > 0


async def test_get_with_query_merges_the_url_query(client: IntegrationClient, base: str) -> None:
    response = await client.perform(
        call(f"{base}/echo?page=2", query={"q": "red shoes", "lang": "ko"}), LOCAL
    )
    assert response.status == 200
    assert response.body["query"] == {"page": "2", "q": "red shoes", "lang": "ko"}
    assert response.body["body"] == ""


async def test_text_body_is_sent_as_is_with_the_node_content_type(
    client: IntegrationClient, base: str
) -> None:
    response = await client.perform(
        call(f"{base}/echo", "PUT", content="<order id='7'/>", headers={"Content-Type": "application/xml"}),
        LOCAL,
    )
    assert response.body["body"] == "<order id='7'/>"
    assert response.body["headers"]["content-type"] == "application/xml"


async def test_json_answers_are_parsed_ready_for_save_and_others_are_text(
    client: IntegrationClient, base: str
) -> None:
    parsed = await client.perform(call(f"{base}/profile", "POST", json_body={}), LOCAL)
    assert parsed.body == {"login_url": "https://shop.test/login?t=1", "user": {"id": 7, "tags": ["a", "b"]}}
    plain = await client.perform(call(f"{base}/text"), LOCAL)
    assert plain.ok and plain.body == "plain words, not JSON"


async def test_garbage_json_is_an_error_that_keeps_the_status(client: IntegrationClient, base: str) -> None:
    response = await client.perform(call(f"{base}/garbage"), LOCAL)
    assert response.error == "invalid JSON from 127.0.0.1"
    assert response.status == 200 and not response.ok


@pytest.mark.parametrize("path", ["/big?n=5000", "/big-chunked?n=5000"])
async def test_oversize_answers_are_cut_off(client: IntegrationClient, base: str, path: str) -> None:
    policy = IntegratePolicy(allow_hosts=("127.0.0.1",), max_response_bytes=1000)
    response = await client.perform(call(base + path), policy)
    assert response.error == "response larger than 1000 bytes"
    small = await client.perform(call(f"{base}/big?n=1000"), policy)
    assert small.ok and small.body == "x" * 1000


# -------------------------------------------------------------------------------------- statuses and retries


async def test_500_then_200_succeeds_with_one_retry(client: IntegrationClient, base: str) -> None:
    name = key()
    response = await client.perform(
        call(f"{base}/flaky/{name}/1", "POST", json_body={"a": 1}, retries=1), LOCAL
    )
    assert response.ok and response.body == {"ok": True, "hits": 2}
    assert hits[name] == 2


async def test_500_without_retries_comes_back_with_its_status(client: IntegrationClient, base: str) -> None:
    name = key()
    response = await client.perform(call(f"{base}/status/{name}/500"), LOCAL)
    assert response.status == 500 and not response.ok
    assert response.body == {"status": 500}
    assert hits[name] == 1


async def test_client_errors_are_not_retried(client: IntegrationClient, base: str) -> None:
    name = key()
    response = await client.perform(call(f"{base}/status/{name}/404", retries=3), LOCAL)
    assert response.status == 404 and hits[name] == 1


async def test_retries_stop_when_retry_after_exceeds_the_time_left(
    client: IntegrationClient, base: str
) -> None:
    name = key()
    started = time.monotonic()
    response = await client.perform(
        call(f"{base}/status/{name}/503?retry_after=60", timeout=1, retries=2), LOCAL
    )
    assert response.status == 503 and hits[name] == 1
    assert time.monotonic() - started < 1


async def test_hanging_endpoint_times_out_without_delaying_other_calls(
    client: IntegrationClient, base: str
) -> None:
    async def timed(http_call: HttpCall) -> tuple[HttpResponse, float]:
        started = time.monotonic()
        response = await client.perform(http_call, LOCAL)
        return response, time.monotonic() - started

    hanging = asyncio.create_task(timed(call(f"{base}/hang/{key()}", timeout=0.8)))
    await asyncio.sleep(0.05)
    quick = await asyncio.gather(*(timed(call(f"{base}/echo")) for _ in range(5)))
    assert all(response.ok and seconds < 0.5 for response, seconds in quick)
    assert not hanging.done()

    response, seconds = await hanging
    assert response.error == "no answer from 127.0.0.1 within 0.8 s"
    assert response.status is None
    assert 0.75 < seconds < 1.2


async def test_a_post_that_may_have_arrived_is_not_repeated(client: IntegrationClient, base: str) -> None:
    name = key()
    response = await client.perform(
        call(f"{base}/hang/{name}", "POST", json_body={}, timeout=0.3, retries=2), LOCAL
    )
    assert response.error == "no answer from 127.0.0.1 within 0.3 s"
    assert hits[name] == 1


async def test_a_hanging_get_is_retried_within_the_total_deadline(
    client: IntegrationClient, base: str
) -> None:
    name = key()
    started = time.monotonic()
    response = await client.perform(call(f"{base}/hang/{name}", timeout=0.3, retries=1), LOCAL)
    assert response.error == "no answer from 127.0.0.1 within 0.3 s (after 2 attempts)"
    assert hits[name] == 2
    assert time.monotonic() - started < 0.3 * 2 + 0.2


async def test_closed_port_fails_fast_and_connect_errors_are_retried(client: IntegrationClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused

    started = time.monotonic()
    response = await client.perform(call(f"http://127.0.0.1:{port}/x", timeout=5), LOCAL)
    assert response.error == "127.0.0.1 refused the connection"
    assert time.monotonic() - started < 0.5

    retried = await client.perform(call(f"http://127.0.0.1:{port}/x", "POST", timeout=5, retries=2), LOCAL)
    assert retried.error == "127.0.0.1 refused the connection (after 3 attempts)"


# -------------------------------------------------------------------------------------------- the SSRF guard


async def test_loopback_is_refused_unless_allowed(client: IntegrationClient, base: str) -> None:
    name = key()
    refused = await client.perform(call(f"{base}/status/{name}/200"), IntegratePolicy())
    assert refused.error == (
        "refused: 127.0.0.1 is a loopback address (add the host to integrate.allow_hosts to allow it)"
    )
    assert refused.status is None and hits[name] == 0

    by_network = await client.perform(
        call(f"{base}/status/{name}/200"), IntegratePolicy(allow_hosts=("127.0.0.0/8",))
    )
    assert by_network.ok and hits[name] == 1


async def test_localhost_is_refused_and_allowed_by_name(
    client: IntegrationClient, server: LocalServer
) -> None:
    url = f"http://localhost:{server.port}/echo"
    refused = await client.perform(call(url), IntegratePolicy())
    assert refused.error is not None
    assert refused.error.startswith("refused: localhost resolves to ")
    assert "a loopback address" in refused.error

    allowed = await client.perform(call(url), IntegratePolicy(allow_hosts=("localhost",)))
    assert allowed.ok, allowed.error
    assert allowed.body["headers"]["host"] == f"localhost:{server.port}"


async def test_a_public_looking_name_resolving_to_a_private_address_is_refused() -> None:
    resolver = resolving({"api.shop.example": ["10.0.0.5"]})
    async with IntegrationClient(resolver=resolver) as client:
        response = await client.perform(call("https://api.shop.example/orders"), IntegratePolicy())
    assert response.error == (
        "refused: api.shop.example resolves to 10.0.0.5, a private address "
        "(add the host to integrate.allow_hosts to allow it)"
    )
    assert resolver.asked == ["api.shop.example"]


async def test_the_checked_address_is_the_one_connected_to(server: LocalServer) -> None:
    resolver = resolving({"api.shop.test": ["127.0.0.1"]})
    async with IntegrationClient(resolver=resolver) as client:
        response = await client.perform(call(f"http://api.shop.test:{server.port}/echo"), LOCAL)
    assert response.ok, response.error
    assert response.body["headers"]["host"] == f"api.shop.test:{server.port}"
    assert resolver.asked == ["api.shop.test"]  # one lookup: no second one for the connection to race with


async def test_redirects_are_followed_and_each_hop_is_checked(client: IntegrationClient, base: str) -> None:
    followed = await client.perform(call(f"{base}/redirect?to=/profile"), LOCAL)
    assert followed.ok and followed.body["user"]["id"] == 7

    metadata = await client.perform(
        call(f"{base}/redirect?to=http://169.254.169.254/latest/meta-data/"), LOCAL
    )
    assert metadata.error is not None and "169.254.169.254 is a link-local address" in metadata.error

    to_file = await client.perform(call(f"{base}/redirect?to=file:///etc/passwd"), LOCAL)
    assert (
        to_file.error
        == "refused: only http and https URLs can be called, not file: (redirected from 127.0.0.1)"
    )

    looping = await client.perform(call(f"{base}/loop"), LOCAL)
    assert looping.error == "too many redirects (more than 3)"


async def test_a_redirect_to_a_forbidden_address_is_refused_before_any_request(server: LocalServer) -> None:
    # Only the name is allowed; the redirect names the very server by its loopback IP, so only the guard
    # stands between the redirect and a request.
    name = key()
    resolver = resolving({"api.shop.test": ["127.0.0.1"]})
    target = f"http://127.0.0.1:{server.port}/status/{name}/200"
    async with IntegrationClient(resolver=resolver) as client:
        response = await client.perform(
            call(f"http://api.shop.test:{server.port}/redirect?to={target}"),
            IntegratePolicy(allow_hosts=("api.shop.test",)),
        )
    assert response.error == (
        "refused: redirect to 127.0.0.1: 127.0.0.1 is a loopback address "
        "(add the host to integrate.allow_hosts to allow it)"
    )
    assert hits[name] == 0


async def test_when_one_checked_address_refuses_the_next_one_is_tried(server: LocalServer) -> None:
    resolver = resolving(
        {"dual.shop.test": ["127.0.0.2", "127.0.0.1"]}
    )  # the server listens on 127.0.0.1 only
    async with IntegrationClient(resolver=resolver) as client:
        response = await client.perform(
            call(f"http://dual.shop.test:{server.port}/echo"),
            IntegratePolicy(allow_hosts=("dual.shop.test",)),
        )
    assert response.ok, response.error
    assert response.body["headers"]["host"] == f"dual.shop.test:{server.port}"


async def test_a_303_after_post_is_fetched_with_get_and_no_body(client: IntegrationClient, base: str) -> None:
    response = await client.perform(
        call(f"{base}/redirect?to=/echo&code=303", "POST", json_body={"a": 1}), LOCAL
    )
    assert response.body["method"] == "GET" and response.body["body"] == ""
    kept = await client.perform(call(f"{base}/redirect?to=/echo&code=307", "POST", json_body={"a": 1}), LOCAL)
    assert kept.body["method"] == "POST" and kept.body["body"] == '{"a":1}'


async def test_node_headers_and_signature_stay_with_the_host_the_node_names(server: LocalServer) -> None:
    resolver = resolving({"api.shop.test": ["127.0.0.1"]})
    policy = IntegratePolicy(allow_hosts=("127.0.0.1",), signing_secret=b"s3cret")
    headers = {"Authorization": "Bearer k1"}
    async with IntegrationClient(resolver=resolver) as client:
        same = await client.perform(
            call(f"http://127.0.0.1:{server.port}/redirect?to=/echo", headers=headers), policy
        )
        other = f"http://api.shop.test:{server.port}/echo"
        elsewhere = await client.perform(
            call(f"http://127.0.0.1:{server.port}/redirect?to={other}", headers=headers), policy
        )
    assert same.body["headers"]["authorization"] == "Bearer k1"
    assert "x-rejoinder-signature" in same.body["headers"]
    assert elsewhere.body["headers"]["host"] == f"api.shop.test:{server.port}"
    assert "authorization" not in elsewhere.body["headers"]
    assert "x-rejoinder-signature" not in elsewhere.body["headers"]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", "refused: only http and https URLs can be called, not file:"),
        ("gopher://127.0.0.1:70/x", "refused: only http and https URLs can be called, not gopher:"),
        ("/chat/resume-token", "the URL is not absolute: it needs http:// or https:// and a host"),
        ("http:///no-host", "the URL has no host"),
    ],
)
async def test_unusable_urls_are_errors_not_exceptions(
    client: IntegrationClient, url: str, error: str
) -> None:
    response = await client.perform(call(url), LOCAL)
    assert response.error == error and response.status is None


async def test_bad_headers_and_bodies_are_errors_not_exceptions(client: IntegrationClient, base: str) -> None:
    split = await client.perform(call(f"{base}/echo", headers={"X-Evil": "a\r\nInjected: 1"}), LOCAL)
    assert split.error is not None and "'X-Evil'" in split.error
    unencodable = await client.perform(call(f"{base}/echo", "POST", json_body={"n": float("nan")}), LOCAL)
    assert unencodable.error is not None and unencodable.error.startswith(
        "the request body cannot be sent as JSON"
    )


# --------------------------------------------------------------------------------------- signing and logging


async def test_signed_calls_verify_and_fail_when_the_body_is_altered(
    client: IntegrationClient, base: str
) -> None:
    secret = b"whsec_shop"
    policy = IntegratePolicy(allow_hosts=("127.0.0.1",), signing_secret=secret)
    response = await client.perform(
        call(
            f"{base}/echo",
            "POST",
            json_body={"RESUME_TOKEN": "rjt_abc"},
            headers={"X-Rejoinder-Signature": "v1=0"},
        ),
        policy,
    )
    seen = response.body
    timestamp, signature = seen["headers"]["x-rejoinder-timestamp"], seen["headers"]["x-rejoinder-signature"]
    assert abs(int(timestamp) - time.time()) < 5
    assert verify_signature(secret, timestamp, seen["body"].encode(), signature)
    assert not verify_signature(secret, timestamp, seen["body"].replace("abc", "abd").encode(), signature)

    get = (await client.perform(call(f"{base}/echo"), policy)).body["headers"]
    assert verify_signature(secret, get["x-rejoinder-timestamp"], b"", get["x-rejoinder-signature"])


def test_policy_from_settings_reads_the_secret_from_the_environment() -> None:
    settings = IntegrateSettings(
        allow_hosts=["127.0.0.1", "10.0.0.0/8"], signing_secret_env="SHOP_SIGNING_SECRET"
    )
    policy = IntegratePolicy.from_settings(settings, {"SHOP_SIGNING_SECRET": "whsec_1"})
    assert policy.signing_secret == b"whsec_1"
    assert policy.allow_hosts == ("127.0.0.1", "10.0.0.0/8")
    assert policy.max_response_bytes == 1_048_576
    with pytest.raises(ValueError, match="SHOP_SIGNING_SECRET is not set"):
        IntegratePolicy.from_settings(settings, {})
    with pytest.raises(ValueError, match=r"integrate\.allow_hosts"):
        IntegratePolicy(allow_hosts=("https://api.shop.example",))


async def test_logs_name_the_host_but_never_the_path_query_or_body(
    client: IntegrationClient, base: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="rejoinder.integrations")
    await client.perform(
        call(f"{base}/echo/rjt_path", "POST", query={"token": "rjt_query"}, json_body={"t": "rjt_body"}),
        LOCAL,
    )
    await client.perform(call(f"{base}/echo", query={"token": "rjt_query"}), IntegratePolicy())
    assert "127.0.0.1" in caplog.text and "send_token" in caplog.text
    assert "rjt_" not in caplog.text


# ------------------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalServer, ssl.SSLContext]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder: Path = tmp_path_factory.mktemp("tls")
    cert, key_file = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key_file), "-out", str(cert), "-days", "2", "-subj", "/CN=api.shop.test",
            "-addext", "subjectAltName=DNS:api.shop.test",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    trust = ssl.create_default_context(cafile=str(cert))
    with LocalServer(ssl_certfile=str(cert), ssl_keyfile=str(key_file)) as running:
        yield running, trust


async def test_tls_verifies_the_host_name_while_connecting_to_the_checked_ip(
    tls_server: tuple[LocalServer, ssl.SSLContext],
) -> None:
    server, trust = tls_server
    resolver = resolving({"api.shop.test": ["127.0.0.1"], "other.shop.test": ["127.0.0.1"]})
    async with IntegrationClient(transport=ServerNamePools(verify=trust), resolver=resolver) as client:
        good = await client.perform(call(f"https://api.shop.test:{server.port}/echo"), LOCAL)
        assert good.ok, good.error
        assert good.body["headers"]["host"] == f"api.shop.test:{server.port}"

        # Same IP and port as the pooled connection above, but the certificate does not name this host.
        wrong = await client.perform(call(f"https://other.shop.test:{server.port}/echo"), LOCAL)
        assert wrong.error is not None
        assert wrong.error.startswith("the TLS certificate of other.shop.test is not valid")


async def test_pools_beyond_the_name_limit_are_closed_and_made_again_when_needed(
    tls_server: tuple[LocalServer, ssl.SSLContext],
) -> None:
    server, trust = tls_server
    resolver = resolving({"api.shop.test": ["127.0.0.1"], "other.shop.test": ["127.0.0.1"]})
    pools = ServerNamePools(verify=trust, max_server_names=1)
    async with IntegrationClient(transport=pools, resolver=resolver) as client:
        first = await client.perform(call(f"https://api.shop.test:{server.port}/echo"), LOCAL)
        other = await client.perform(call(f"https://other.shop.test:{server.port}/echo"), LOCAL)
        again = await client.perform(call(f"https://api.shop.test:{server.port}/echo"), LOCAL)
        assert len(pools._pools) == 1  # the idle pool of the other name was closed
    assert first.ok and again.ok, (first.error, again.error)
    assert other.error is not None and "certificate" in other.error


# ---------------------------------------------------------------------------------------- token references


async def test_the_far_end_receives_the_secrets_and_an_echo_brings_back_references(
    client: IntegrationClient, base: str
) -> None:
    token, other = mint(), mint()
    ref, stale = TokenRef(token.token_id), TokenRef(other.token_id)  # ``other`` was not minted this turn
    secret = b"whsec_shop"
    policy = IntegratePolicy(allow_hosts=("127.0.0.1",), signing_secret=secret)
    name = key()
    for answer_as in ("json", "text"):
        response = await client.perform(
            call(
                f"{base}/record/{name}/{ref}?as={answer_as}&link=https%3A%2F%2Fshop.test%2F%3Ft%3D{ref}",
                "POST",
                headers={"Authorization": f"Bearer {ref}"},
                query={"again": ref, "stale": stale},
                json_body={"RESUME_TOKEN": ref, "nested": [{"t": "x" + ref}], "stale": stale},
                token_secrets={token.token_id: token.secret},
            ),
            policy,
        )
        seen = received[name]
        assert seen["path"] == f"/record/{name}/{token.secret}"
        assert seen["query"]["link"] == f"https://shop.test/?t={token.secret}"
        assert seen["query"]["again"] == token.secret and seen["query"]["stale"] == stale
        assert seen["headers"]["authorization"] == f"Bearer {token.secret}"
        assert json.loads(seen["body"]) == {
            "RESUME_TOKEN": token.secret,
            "nested": [{"t": "x" + token.secret}],
            "stale": stale,
        }
        headers = seen["headers"]
        assert verify_signature(
            secret, headers["x-rejoinder-timestamp"], seen["body"].encode(), headers["x-rejoinder-signature"]
        )
        # The far end echoed every secret; what the skill can save holds the reference in its place.
        echoed = response.body if answer_as == "json" else json.loads(response.body)
        assert response.ok and token.secret not in json.dumps(echoed)
        assert echoed["headers"]["authorization"] == f"Bearer {ref}"
        assert json.loads(echoed["body"])["RESUME_TOKEN"] == ref


async def test_a_call_without_the_turn_secrets_sends_the_references(
    client: IntegrationClient, base: str
) -> None:
    ref = TokenRef(mint().token_id)
    name = key()
    response = await client.perform(call(f"{base}/record/{name}/x", "POST", json_body={"t": ref}), LOCAL)
    assert response.ok and json.loads(received[name]["body"]) == {"t": ref}


async def test_a_body_with_a_token_secret_is_not_sent_on_to_another_site(server: LocalServer) -> None:
    token = mint()
    ref = TokenRef(token.token_id)
    policy = IntegratePolicy(allow_hosts=("127.0.0.1",))
    resolver = resolving({"api.shop.test": ["127.0.0.1"]})
    other = f"http://api.shop.test:{server.port}/echo"
    async with IntegrationClient(resolver=resolver) as client:
        elsewhere = await client.perform(
            call(
                f"http://127.0.0.1:{server.port}/redirect?to={other}&code=307",
                "POST",
                json_body={"RESUME_TOKEN": ref},
                token_secrets={token.token_id: token.secret},
            ),
            policy,
        )
        name = key()
        same_site = await client.perform(
            call(
                f"http://127.0.0.1:{server.port}/redirect?to=/record/{name}/x&code=307",
                "POST",
                json_body={"RESUME_TOKEN": ref},
                token_secrets={token.token_id: token.secret},
            ),
            policy,
        )
    assert not elsewhere.ok
    assert elsewhere.error == (
        "127.0.0.1 redirected the call to api.shop.test: a request that carries a conversation token is not "
        "sent on to another site"
    )
    assert same_site.ok and json.loads(received[name]["body"]) == {"RESUME_TOKEN": token.secret}
