"""Access log lines parsed back (text and JSON), and a writer that never blocks the caller."""

from __future__ import annotations

import io
import json
import os
import re
import threading
import time
from collections.abc import Iterator

import pytest

from isthmus.obs.accesslog import AccessLog, HttpEntry, TcpEntry, format_json, format_text
from isthmus.obs.accesslog import _Clock as Clock

START = 1704067200.123  # 2024-01-01T00:00:00.123Z

# Istio's default text format, one group per command operator.
LINE = re.compile(
    r'^\[(?P<start_time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" '
    r"(?P<response_code>\d+) (?P<response_flags>\S+) (?P<response_code_details>\S+) "
    r'(?P<connection_termination_details>\S+) "(?P<upstream_transport_failure_reason>[^"]*)" '
    r"(?P<bytes_received>\d+) (?P<bytes_sent>\d+) (?P<duration>\d+) "
    r'(?P<upstream_service_time>\S+) "(?P<x_forwarded_for>[^"]*)" "(?P<user_agent>[^"]*)" '
    r'"(?P<request_id>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)" '
    r"(?P<upstream_cluster>\S+) (?P<upstream_local_address>\S+) "
    r"(?P<downstream_local_address>\S+) (?P<downstream_remote_address>\S+) "
    r"(?P<requested_server_name>\S+) (?P<route_name>\S+)\n$"
)

# EnvoyJSONLogFormatIstio in istio/istio pilot/pkg/model/telemetry_logging.go
ISTIO_JSON_KEYS = {
    "start_time", "route_name", "method", "path", "protocol", "response_code",
    "response_flags", "response_code_details", "connection_termination_details",
    "bytes_received", "bytes_sent", "duration", "upstream_service_time", "x_forwarded_for",
    "user_agent", "request_id", "authority", "upstream_host", "upstream_cluster",
    "upstream_local_address", "downstream_local_address", "downstream_remote_address",
    "requested_server_name", "upstream_transport_failure_reason",
}  # fmt: skip

CLUSTER = "outbound|9080||productpage.default.svc.cluster.local"


def full_http() -> HttpEntry:
    return HttpEntry(
        start_time=START,
        method="GET",
        path="/productpage?u=1",
        protocol="HTTP/1.1",
        response_code=200,
        response_flags="-",
        bytes_received=0,
        bytes_sent=5183,
        duration_ms=12.9,
        authority="bookinfo.example.com",
        downstream_local_address="10.0.0.5:8443",
        downstream_remote_address="192.168.0.24:51234",
        upstream_host="10.0.1.7:9080",
        upstream_cluster=CLUSTER,
        upstream_local_address="10.0.0.5:40122",
        upstream_service_time="11",
        route_name="bookinfo.spec.http[0].match[0]",
        x_forwarded_for="192.168.0.24",
        user_agent="curl/8.5.0",
        request_id="6a1c1c52-2b5e-4f0e-9d47-6a0b6a6a7c1d",
        requested_server_name="bookinfo.example.com",
        response_code_details="via_upstream",
    )


def minimal_http() -> HttpEntry:
    return HttpEntry(
        START, "GET", "/nope", "HTTP/1.1", 404, "NR", 0, 0, 0.4, "x.example",
        "10.0.0.5:8080", "192.168.0.24:5000", response_code_details="route_not_found",
    )  # fmt: skip


def tcp_entry(flags: str = "-") -> TcpEntry:
    return TcpEntry(
        start_time=START,
        duration_ms=10_000.7,
        bytes_received=1234,
        bytes_sent=5678,
        response_flags=flags,
        downstream_local_address="10.0.0.5:31400",
        downstream_remote_address="192.168.0.24:40000",
        upstream_host="127.0.0.1:9001" if flags == "-" else None,
        upstream_cluster="outbound|9000|v1|tcp-echo.default.svc.cluster.local",
        upstream_local_address="127.0.0.1:51000" if flags == "-" else None,
        upstream_transport_failure_reason=None if flags == "-" else "connection refused",
    )


def test_start_time_format() -> None:
    clock = Clock()
    assert clock.format(START) == "2024-01-01T00:00:00.123Z"
    assert clock.format(START + 61.5) == "2024-01-01T00:01:01.623Z"


def test_http_text_line_parses_back() -> None:
    line = format_text(full_http(), Clock())
    m = LINE.match(line)
    assert m is not None, line
    assert m.groupdict() == {
        "start_time": "2024-01-01T00:00:00.123Z",
        "method": "GET",
        "path": "/productpage?u=1",
        "protocol": "HTTP/1.1",
        "response_code": "200",
        "response_flags": "-",
        "response_code_details": "via_upstream",
        "connection_termination_details": "-",
        "upstream_transport_failure_reason": "-",
        "bytes_received": "0",
        "bytes_sent": "5183",
        "duration": "12",
        "upstream_service_time": "11",
        "x_forwarded_for": "192.168.0.24",
        "user_agent": "curl/8.5.0",
        "request_id": "6a1c1c52-2b5e-4f0e-9d47-6a0b6a6a7c1d",
        "authority": "bookinfo.example.com",
        "upstream_host": "10.0.1.7:9080",
        "upstream_cluster": CLUSTER,
        "upstream_local_address": "10.0.0.5:40122",
        "downstream_local_address": "10.0.0.5:8443",
        "downstream_remote_address": "192.168.0.24:51234",
        "requested_server_name": "bookinfo.example.com",
        "route_name": "bookinfo.spec.http[0].match[0]",
    }


def test_http_text_line_uses_dashes_for_missing_fields() -> None:
    line = format_text(minimal_http(), Clock())
    assert line == (
        '[2024-01-01T00:00:00.123Z] "GET /nope HTTP/1.1" 404 NR route_not_found - "-" 0 0 0 - '
        '"-" "-" "-" "x.example" "-" - - 10.0.0.5:8080 192.168.0.24:5000 - -\n'
    )
    assert LINE.match(line) is not None


def test_tcp_text_lines() -> None:
    ok = LINE.match(format_text(tcp_entry(), Clock()))
    assert ok is not None
    fields = ok.groupdict()
    assert (fields["method"], fields["path"], fields["protocol"]) == ("-", "-", "-")
    assert fields["response_code"] == "0"
    assert fields["bytes_received"] == "1234" and fields["bytes_sent"] == "5678"
    assert fields["duration"] == "10000"
    assert fields["upstream_host"] == "127.0.0.1:9001"
    failed = LINE.match(format_text(tcp_entry("UF"), Clock()))
    assert failed is not None
    assert failed["response_flags"] == "UF"
    assert failed["upstream_transport_failure_reason"] == "connection refused"
    assert failed["upstream_host"] == "-" and failed["upstream_local_address"] == "-"


def test_http_json_line() -> None:
    record = json.loads(format_json(full_http(), Clock()))
    assert set(record) == ISTIO_JSON_KEYS
    assert record["start_time"] == "2024-01-01T00:00:00.123Z"
    assert record["response_code"] == 200 and record["duration"] == 12
    assert record["bytes_sent"] == 5183
    assert record["upstream_service_time"] == "11"
    assert record["response_flags"] == "-"
    assert record["connection_termination_details"] is None
    sparse = json.loads(format_json(minimal_http(), Clock()))
    assert sparse["response_flags"] == "NR"
    assert sparse["upstream_host"] is None and sparse["user_agent"] is None


def test_tcp_json_line() -> None:
    record = json.loads(format_json(tcp_entry("UF"), Clock()))
    assert set(record) == ISTIO_JSON_KEYS
    assert record["method"] is None and record["protocol"] is None
    assert record["response_code"] == 0
    assert record["response_flags"] == "UF"
    assert record["bytes_received"] == 1234 and record["duration"] == 10000


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        AccessLog("xml", io.StringIO())  # type: ignore[arg-type]


def test_writes_every_entry_in_order_to_a_stream() -> None:
    out = io.StringIO()
    log = AccessLog("json", out, flush_interval=0.01)
    for i in range(100):
        log.http(
            HttpEntry(START, "GET", f"/{i}", "HTTP/1.1", 200, "-", 0, 0, 1.0, "h", "a:1", "b:2")
        )
    log.tcp(tcp_entry())
    assert log.close()
    lines = out.getvalue().splitlines()
    assert [json.loads(x)["path"] for x in lines[:100]] == [f"/{i}" for i in range(100)]
    assert json.loads(lines[100])["response_code"] == 0
    assert log.written == 101 and log.dropped == 0


def test_writes_whole_lines_to_a_file_descriptor() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as stream, os.fdopen(read_fd, "rb") as reader:
        log = AccessLog("text", stream, flush_interval=0.01)
        for _ in range(100):  # 40 KB: fits in the pipe, nobody reads until the end
            log.http(full_http())
        assert log.close()
        stream.close()
        lines = reader.read().decode().splitlines(keepends=True)
    assert len(lines) == 100
    assert all(LINE.match(line) for line in lines)


class BlockedStream(io.StringIO):
    """A reader that stopped reading: ``write`` waits until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, s: str) -> int:
        self.release.wait(30)
        return super().write(s)


def test_a_blocked_stream_never_slows_recording_and_drops_are_counted() -> None:
    stream = BlockedStream()
    log = AccessLog("text", stream, max_pending=1000, batch=100, flush_interval=0.01)
    entry = full_http()
    total = 50_000
    start = time.perf_counter()
    for _ in range(total):
        log.http(entry)
    elapsed = time.perf_counter() - start
    assert elapsed / total * 1e6 < 5, f"{elapsed / total * 1e6:.2f} µs per entry"
    assert log.pending <= 1000
    assert log.dropped >= total - 1000 - 100
    stream.release.set()
    assert log.close(timeout=10)
    assert log.written + log.dropped == total
    assert len(stream.getvalue().splitlines()) == log.written


@pytest.fixture
def unread_pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)


def test_a_full_pipe_never_blocks_recording(unread_pipe: tuple[int, int]) -> None:
    read_fd, write_fd = unread_pipe
    stream = os.fdopen(write_fd, "w")
    log = AccessLog("text", stream, max_pending=500, flush_interval=0.01)
    entry = full_http()
    start = time.perf_counter()
    for _ in range(20_000):
        log.http(entry)
        log.tcp(tcp_entry())
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    time.sleep(0.2)  # the writer fills the pipe (64 KiB) and blocks
    assert log.pending <= 500
    assert log.dropped > 0
    assert not log.flush(timeout=0.2)

    drained = bytearray()

    def drain() -> None:
        while chunk := os.read(read_fd, 65536):
            drained.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert log.close(timeout=10)
    stream.close()
    reader.join(10)
    lines = drained.decode().splitlines(keepends=True)
    assert len(lines) == log.written == 40_000 - log.dropped
    assert all(LINE.match(line) for line in lines)


def test_json_escapes_header_values() -> None:
    entry = minimal_http()
    entry.user_agent = 'curl "quoted" \\ ünïcode\t'
    record = json.loads(format_json(entry, Clock()))
    assert record["user_agent"] == 'curl "quoted" \\ ünïcode\t'
