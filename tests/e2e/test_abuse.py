"""Size abuse, slow clients, overload and faults, against real uvicorn processes.

Every loop here is bounded in count; waits are for events under tests/waiting.HANG (a busy machine
is slow, not wrong); the long load test is bench/load.py."""

from __future__ import annotations

import io
import select
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from helpers import CONTENT, STYLE_A, files, noise_image, png
from serverproc import run_server
from waiting import HANG, wait_for

GIB = 1024**3
MIB = 1024**2


@pytest.fixture(scope="module")
def server(server_env, tmp_path_factory):
    env = {**server_env, "ADAIN_HEADER_TIMEOUT": "2", "ADAIN_BODY_TIMEOUT": "3", "ADAIN_WORKERS": "1",
           "ADAIN_QUEUE_DEPTH": "2"}
    with run_server(tmp_path_factory.mktemp("abuse"), **env) as s:
        yield s


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=HANG)


def read_reply(sock: socket.socket, timeout: float) -> bytes:
    """Whatever the server sends, waiting up to ``timeout`` s for its first bytes (until it closes,
    or goes quiet for half a second after a whole head)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.startswith(b"HTTP/"):
                sock.settimeout(0.5)
    except (TimeoutError, socket.timeout, ConnectionResetError):
        pass
    return data


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within ``timeout`` s; any bytes
    it sends first (a 408) are read and ignored. False when it is still open at the deadline."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except (TimeoutError, socket.timeout):
        return False


def still_serving(server) -> None:
    with server.client() as c:
        r = c.post("/stylize", files=files(CONTENT, STYLE_A))
        assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (96, 64)
    assert server.proc.poll() is None


HEAD = ("POST /stylize HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n{extra}\r\n")


def test_a_declared_2gb_upload_is_refused_before_reading(server):
    """Only the head and a boundary are sent: a 413 can only come from the declared length."""
    before, _ = server.rss_mb()
    with connect(server) as s:
        s.sendall(HEAD.format(extra=f"Content-Length: {2 * GIB}\r\n").encode() + b"--b\r\n")
        reply = read_reply(s, HANG)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"ADAIN_MAX_TOTAL_BYTES" in reply
    assert server.rss_mb()[0] - before < 20
    still_serving(server)


def test_a_streamed_2gb_upload_is_cut_off_at_the_limit(server):
    """Chunked, so no Content-Length to refuse: the server counts and stops at 50 MB."""
    _, peak_before = server.rss_mb()
    part = b"--b\r\nContent-Disposition: form-data; name=\"content\"; filename=\"x.png\"\r\n\r\n"
    block = b"\0" * MIB
    sent, reply = 0, b""
    with connect(server) as s:
        s.sendall(HEAD.format(extra="Transfer-Encoding: chunked\r\n").encode())
        s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        while sent < 2 * GIB:
            if select.select([s], [], [], 0)[0]:  # the server answered: stop sending
                break
            try:
                s.sendall(b"%x\r\n%s\r\n" % (len(block), block))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(block)
        reply = read_reply(s, HANG)
    assert sent < 120 * MIB, f"sent {sent / MIB:.0f} MB before the server stopped reading"
    assert reply == b"" or reply.startswith(b"HTTP/1.1 413"), reply[:200]
    _, peak_after = server.rss_mb()
    assert peak_after - peak_before < 400, (peak_before, peak_after)
    still_serving(server)


def test_many_small_parts_are_refused(server):
    with server.client() as c:
        r = c.post("/stylize", files=files(CONTENT, STYLE_A), data={"f": ["x"] * 5000})
    assert r.status_code == 400 and "fields" in r.json()["detail"].lower()
    still_serving(server)


def test_slow_headers_get_408_and_do_not_block_others(server):
    """A header line every 0.25 s never finishes the head: a 408, never before ADAIN_HEADER_TIMEOUT."""
    with connect(server) as s:
        s.sendall(b"POST /stylize HTTP/1.1\r\n")
        t = time.perf_counter()
        reply = b""
        while time.perf_counter() - t < HANG and not reply:
            try:
                s.sendall(b"X: y\r\n")  # one header line every 0.25 s, never finishing
            except (BrokenPipeError, ConnectionResetError):
                break
            if time.perf_counter() - t < 1:
                still_serving(server)
            if select.select([s], [], [], 0.25)[0]:
                reply = read_reply(s, 1)
        took = time.perf_counter() - t
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert took > 1.5, took  # not cut off before its time (later is only a busy machine)


def test_a_slow_body_gets_408(server):
    with connect(server) as s:
        s.sendall(HEAD.format(extra="Content-Length: 100000\r\n").encode()
                  + b"--b\r\nContent-Disposition: form-data; name=\"content\"; filename=\"x.png\"\r\n\r\n")
        t = time.perf_counter()
        reply = b""
        while time.perf_counter() - t < HANG and not reply:
            s.sendall(b"x")
            if select.select([s], [], [], 0.25)[0]:
                reply = read_reply(s, 1)
        took = time.perf_counter() - t
    assert reply.startswith(b"HTTP/1.1 408") and b"ADAIN_BODY_TIMEOUT" in reply, reply[:300]
    assert took > 2.5, took  # ADAIN_BODY_TIMEOUT is 3 s
    still_serving(server)


def test_idle_connections_are_closed(server):
    """Twenty connections that never send a byte: the server closes every one (after
    ADAIN_HEADER_TIMEOUT) and serves others meanwhile."""
    socks = [connect(server) for _ in range(20)]
    still_serving(server)
    closed = 0
    for s in socks:
        with s:
            closed += closed_by_server(s, HANG)
    assert closed == len(socks)


def test_overload_gets_only_200_or_503_and_the_queue_drains(server):
    """16 clients against 1 worker + 2 waiting slots, ~6 s, at most 25 requests each."""
    statuses: Counter[int] = Counter()
    retry_after_ok = True
    lock = threading.Lock()
    stop = time.perf_counter() + 6

    def client(_: int) -> None:
        nonlocal retry_after_ok
        with httpx.Client(base_url=server.url, timeout=HANG) as c:
            for _ in range(25):
                if time.perf_counter() > stop:
                    return
                r = c.post("/stylize", files=files(CONTENT, STYLE_A))
                with lock:
                    statuses[r.status_code] += 1
                    if r.status_code == 503:
                        retry_after_ok &= int(r.headers.get("retry-after", "0")) >= 1
                    if r.status_code == 200:
                        Image.open(io.BytesIO(r.content)).load()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client, range(16)))
    assert set(statuses) <= {200, 503} and statuses[200] > 0 and statuses[503] > 0, statuses
    assert retry_after_ok
    wait_for(lambda: server.metric("adain_queue_depth") + server.metric("adain_in_flight") == 0, "the queue to drain")
    assert server.rss_mb()[1] < 2048
    still_serving(server)


BIG = png(noise_image(768, 768, seed=11))  # ~2 s of fp32 work on a 2-core CPU


def test_sigterm_lets_in_flight_requests_finish_and_refuses_new_ones(server_env, tmp_path):
    env = {**server_env, "ADAIN_WORKERS": "1", "ADAIN_QUEUE_DEPTH": "4"}
    with run_server(tmp_path, **env) as s, ThreadPoolExecutor(2) as pool:
        def big() -> httpx.Response:
            with s.client() as c:
                return c.post("/stylize", files=files(BIG, STYLE_A))

        running = [pool.submit(big), pool.submit(big)]
        wait_for(lambda: s.metric("adain_in_flight") + s.metric("adain_queue_depth") >= 2, "both requests accepted")
        s.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: refused(s), "the server to stop accepting connections")
        for f in running:
            r = f.result(timeout=HANG)
            assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).size == (768, 768)
        # uvicorn re-raises the signal once shut down, so the parent sees "terminated by SIGTERM"
        assert s.proc.wait(HANG) in (0, -signal.SIGTERM)


def refused(server) -> bool:
    try:
        httpx.get(f"{server.url}/healthz", timeout=HANG)
    except httpx.ConnectError:
        return True
    return False


def test_a_timed_out_request_frees_its_worker(server_env, tmp_path):
    """A 504 cancels the job: it stops at its next stage. Stages are counted on /metrics as they
    end, so after the 504 at most the stage then running may still end; none may begin."""
    env = {**server_env, "ADAIN_WORKERS": "1", "ADAIN_REQUEST_TIMEOUT": "0.5", "ADAIN_TIMEOUT_PER_MEGAPIXEL": "0",
           "ADAIN_TIMEOUT_MARGIN": "0"}
    with run_server(tmp_path, **env) as s, s.client() as c:
        r = c.post("/stylize", files=files(BIG, STYLE_A, STYLE_A))
        assert r.status_code == 504, r.text
        stages = s.metric("adain_stage_seconds_count")
        wait_for(lambda: s.metric("adain_in_flight") == 0, "the timed-out job to stop")
        assert s.metric("adain_stage_seconds_count") <= stages + 1, "the timed-out job went on to later stages"
        assert s.metric('adain_stage_seconds_count{stage="encode-image"}') == 0
        assert c.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200


def test_a_client_that_disconnects_does_not_leave_work_running(server):
    """Eight 768² styles to encode (~1 s each) then the network: the client leaves as soon as its
    job runs, so the job stops at its next stage and never reaches the network's stylize stage."""
    styles = [png(noise_image(768, 768, seed=20 + i)) for i in range(8)]
    request = httpx.Request("POST", f"{server.url}/stylize", files=files(BIG, *styles), data={"style_size": "768"})
    body = request.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    stylized_before = server.metric('adain_stage_seconds_count{stage="stylize"}')
    with connect(server) as sock:
        sock.sendall(f"POST /stylize HTTP/1.1\r\n{head}\r\n".encode() + body)
        wait_for(lambda: server.metric("adain_in_flight") >= 1, "the job to start", every=0.02)
    wait_for(lambda: server.metric("adain_in_flight") == 0, "the job to stop after the client left")
    assert server.metric('adain_stage_seconds_count{stage="stylize"}') == stylized_before
    with server.client() as c:
        assert c.post("/stylize", files=files(CONTENT, STYLE_A)).status_code == 200
