"""A minimal HTTP/1.1 client for the streaming POST: the load client's lean hot path.

Why not aiohttp here: for every socket read aiohttp runs its response parser,
feeds a ``StreamReader``, wakes the reading task and resumes an async
iterator, about 30 µs of CPU per streamed token on the project's machine.
This client is an :class:`asyncio.Protocol`: the event loop calls
``data_received`` with the read's bytes, which are timestamped there (the
exact moment the loop got them, not when a task woke up), de-chunked and
appended to ``RawRequest.chunks``, so a read costs one callback and one
tuple. The recorded semantics are those of the aiohttp path
(:func:`perfgate.measure.loadgen._send`): ``sent_at`` before the request is
handed over, one ``(t, body bytes)`` per read that carried body bytes,
``done_at`` after the last byte, the same error classes.

Scope, on purpose: HTTP/1.1 (and 1.0) responses with ``Transfer-Encoding:
chunked``, ``Content-Length`` or a body that ends with the connection;
keep-alive connection reuse; ``http`` and ``https``. Connections can be
opened before the measurement window (:meth:`RawClient.prewarm`) so TCP
setup is not counted in TTFT. No redirects, proxies, compression (none is
asked for) or pipelining.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from urllib.parse import urlsplit

from perfgate import __version__
from perfgate.measure.records import ErrorKind, RawRequest, retry_after_seconds, status_kind

_perf = time.perf_counter
_MAX_HEAD = 64 * 1024  # response status line + headers


class ProtocolError(Exception):
    """The server's bytes are not HTTP/1.1 as this client reads it."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection; carries at most one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.rec: RawRequest | None = None
        self.waiter: asyncio.Future | None = None
        self.keep_alive = False

    # -- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass

    def data_received(self, data: bytes) -> None:
        t = _perf()
        if self.rec is None:
            # Bytes outside a request (a server talking out of turn): this connection can't be trusted.
            self.closed = True
            self.transport.abort()
            return
        try:
            self._on_data(t, data)
        except (ProtocolError, ValueError) as exc:
            self._fail(t, ErrorKind.MID_STREAM if self.rec.status == 200 else ErrorKind.PROTOCOL,
                       f"{type(exc).__name__}: {exc}")

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.rec is None:
            return
        t = _perf()
        if self._on_data == self._body_until_close:  # a body delimited by the connection's end
            self._finish(t)
        elif self.rec.status is None:
            self._fail(t, ErrorKind.CONNECT, f"ServerDisconnectedError: closed before a response ({exc or 'EOF'})")
        else:
            self._fail(t, ErrorKind.MID_STREAM if self.rec.status == 200 else ErrorKind.CONNECT,
                       f"ClientPayloadError: connection closed mid-response ({exc or 'EOF'})")

    # -- one request ------------------------------------------------------
    def start(self, rec: RawRequest, request: bytes, waiter: asyncio.Future) -> None:
        self.rec, self.waiter = rec, waiter
        self._head = b""
        self._on_data = self._status_and_headers
        self._err_body: list[bytes] = []
        self._left = 0  # body bytes still due (Content-Length, or the current chunk's data)
        self._skip = 0  # CR LF after a chunk's data still to skip
        self._line = b""  # a chunk-size or trailer line split across reads
        self._trailer = False
        self.transport.write(request)

    def _status_and_headers(self, t: float, data: bytes) -> None:
        buf = self._head + data if self._head else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                raise ProtocolError("response headers too long")
            self._head = buf
            return
        head, rest = buf[:end], buf[end + 4:]
        lines = head.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0][:60]!r}")
        status = int(parts[1])
        if 100 <= status < 200:  # an interim response: the real one follows
            self._head = b""
            if rest:
                self._status_and_headers(t, rest)
            return
        headers = {}
        for ln in lines[1:]:
            name, _, value = ln.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        rec = self.rec
        rec.status = status
        if b"content-type" in headers:
            rec.content_type = headers[b"content-type"].decode("latin-1")
        if b"retry-after" in headers:
            rec.retry_after_s = retry_after_seconds(headers[b"retry-after"].decode("latin-1"))
        self.keep_alive = parts[0] == b"HTTP/1.1" and headers.get(b"connection") != b"close"
        self._head = b""
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            self._on_data = self._chunked
        elif b"content-length" in headers:
            self._left = int(headers[b"content-length"])
            self._on_data = self._length
            if self._left == 0 or status in (204, 304):
                self._finish(t)
                return
        elif status in (204, 304):
            self._finish(t)
            return
        else:
            self.keep_alive = False
            self._on_data = self._body_until_close
        if rest:
            self._on_data(t, rest)

    def _body(self, t: float, body: bytes) -> None:
        if self.rec.status == 200:
            self.rec.chunks.append((t, body))
        else:
            self._err_body.append(body)

    def _chunked(self, t: float, data: bytes) -> None:
        # Fast path: the read is exactly one whole chunk (one SSE event per read, the common case).
        if not (self._left or self._skip or self._line or self._trailer):
            j = data.find(b"\r\n")
            if j > 0:
                size = int(data[:j].split(b";", 1)[0], 16)
                if size and j + 4 + size == len(data) and data.endswith(b"\r\n"):
                    self._body(t, data[j + 2:j + 2 + size])
                    return
        pieces = []
        pos, n = 0, len(data)
        done = False
        try:
            while pos < n:
                if self._left:
                    take = min(self._left, n - pos)
                    pieces.append(data[pos:pos + take])
                    self._left -= take
                    pos += take
                    if not self._left:
                        self._skip = 2
                elif self._skip:
                    take = min(self._skip, n - pos)
                    if data[pos:pos + take] != b"\r\n"[2 - self._skip:2 - self._skip + take]:
                        raise ProtocolError("chunk data not followed by CR LF")
                    self._skip -= take
                    pos += take
                else:
                    j = data.find(b"\n", pos)
                    if j < 0:
                        self._line += data[pos:]
                        if len(self._line) > _MAX_HEAD:
                            raise ProtocolError("chunk-size line too long")
                        break
                    line = (self._line + data[pos:j]) if self._line else data[pos:j]
                    self._line = b""
                    pos = j + 1
                    if self._trailer:
                        if not line.strip():  # the empty line after the last chunk (and any trailers)
                            done = True
                            break
                        continue
                    size = int(line.split(b";", 1)[0], 16)
                    if size < 0:
                        raise ProtocolError("negative chunk size")
                    if size == 0:
                        self._trailer = True
                    else:
                        self._left = size
        finally:  # bytes before a framing error are still what was read
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if body:
                self._body(t, body)
        if done:
            self._finish(t)

    def _length(self, t: float, data: bytes) -> None:
        take = data[:self._left]
        self._left -= len(take)
        if take:
            self._body(t, take)
        if not self._left:
            self._finish(t)

    def _body_until_close(self, t: float, data: bytes) -> None:
        self._body(t, data)

    def _finish(self, t: float) -> None:
        rec = self.rec
        rec.done_at = t
        if rec.status != 200:
            rec.error = status_kind(rec.status)
            rec.error_detail = b"".join(self._err_body)[:300].decode("utf-8", errors="replace")
        self._release()

    def _fail(self, t: float, kind: ErrorKind, detail: str) -> None:
        rec = self.rec
        rec.done_at = t
        rec.error = kind
        rec.error_detail = detail[:300]
        self.keep_alive = False
        self._release()

    def _release(self) -> None:
        waiter = self.waiter
        self.rec = self.waiter = None
        if not self.keep_alive and not self.closed:
            self.closed = True
            self.transport.close()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class RawClient:
    """Keep-alive connections to one server and the streaming POST over them."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"{base_url!r}: not an http(s) URL")
        self._host = u.hostname
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None
        self._prefix = u.path.rstrip("/").encode()
        host = u.netloc.rpartition("@")[2]
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._fixed = (f"Host: {host}\r\nUser-Agent: perfgate/{__version__}\r\nAccept: */*\r\n"
                       f"Content-Type: application/json\r\n{extra}").encode()
        self._idle: list[_Conn] = []
        self._wire: dict[int, bytes] = {}  # request bytes by spec index, built before the window (prepare)
        self._all: set[_Conn] = set()

    def prepare(self, specs) -> None:
        """Build every request's bytes now, before the window: the hot path only hands them over."""
        self._wire.update((s.index, self.request_bytes(s.index, s.path, s.body)) for s in specs)

    def request_bytes(self, index: int, path: str, body: bytes) -> bytes:
        return b"".join((b"POST ", self._prefix, path.encode(), b" HTTP/1.1\r\n", self._fixed,
                         b"Content-Length: %d\r\nX-Request-Id: perfgate-%d\r\n\r\n" % (len(body), index), body))

    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self._host, self._port, ssl=self._ssl,
                                               server_hostname=self._host if self._ssl else None)
        self._all.add(conn)
        return conn

    async def prewarm(self, n: int) -> int:
        """Open connections until ``n`` are idle (before the window); returns how many are open."""
        self._idle = [c for c in self._idle if not c.closed]
        want = n - len(self._idle)
        if want > 0:
            got = await asyncio.gather(*(self._open() for _ in range(want)), return_exceptions=True)
            self._idle.extend(c for c in got if isinstance(c, _Conn))
        return len(self._idle)

    async def _acquire(self) -> _Conn:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
            self._all.discard(conn)
        return await self._open()

    async def send(self, spec, rec: RawRequest, timeout_s: float, deadline: float | None = None,
                   request: bytes | None = None) -> None:
        """The hot path: stamp the send, hand the bytes over, wait; reads are recorded by the protocol.

        ``deadline`` (event-loop time) is the trial's, as on the aiohttp path: a request still in
        flight then is cut off as a timeout.
        """
        if request is None:
            request = self._wire.get(spec.index) or self.request_bytes(spec.index, spec.path, spec.body)
        conn = None
        try:
            async with asyncio.timeout(timeout_s) as scope:
                if deadline is not None and deadline < (scope.when() or deadline):
                    scope.reschedule(deadline)
                # Stamped before the connection is handed out, as on the aiohttp path: an early
                # stamp can only over-state TTFT (docs/accuracy.md).
                rec.sent_at = _perf()
                conn = await self._acquire()
                waiter = asyncio.get_running_loop().create_future()
                conn.start(rec, request, waiter)
                await waiter
        except TimeoutError:
            rec.timed_out(_perf(), timeout_s,
                          deadline is not None and asyncio.get_running_loop().time() >= deadline - 0.01)
            if conn is not None:
                conn.rec = conn.waiter = None
                conn.closed = True
                conn.transport.abort()
            return
        except asyncio.CancelledError:
            if conn is not None:
                conn.rec = conn.waiter = None
                conn.closed = True
                conn.transport.abort()
            raise
        except OSError as exc:  # refused, unreachable, TLS failure: no connection
            rec.done_at = _perf()
            rec.error = ErrorKind.CONNECT
            rec.error_detail = f"Cannot connect to host {self._host}:{self._port} [{exc}]"[:300]
            return
        if conn is not None and not conn.closed and conn.keep_alive:
            self._idle.append(conn)
        elif conn is not None:
            self._all.discard(conn)

    async def close(self) -> None:
        for conn in self._all:
            if not conn.closed and conn.transport is not None:
                conn.closed = True
                conn.transport.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)
