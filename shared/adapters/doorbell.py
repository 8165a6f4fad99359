"""Cross-process wake-ups for the SQLite bus: a doorbell per process.

Within a process, a send wakes waiting receivers through a condition
variable. Across processes (the control plane and each agent share one
bus file) receivers would otherwise only notice new messages by polling.
So each process that waits on the bus rings in on one Unix datagram socket
in Linux's abstract namespace (no file to clean up), listed in the bus file;
a process that changes the queues sends one byte to every other listed
doorbell. A listener thread turns the byte into a local wake-up.

It is only an accelerator: receivers still poll (more slowly), so a lost
ring, a full socket buffer or a platform without abstract sockets costs
latency, never a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable

log = logging.getLogger(__name__)

SUPPORTED = sys.platform.startswith("linux")
_REFRESH_S = 0.5
"""How long a sender trusts its list of doorbells before reading it again."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS doorbells (
    address TEXT PRIMARY KEY,
    pid INTEGER NOT NULL
) WITHOUT ROWID
"""


class Doorbell:
    """This process's doorbell on one bus file, and the ringing of the others'."""

    def __init__(
        self,
        bus_path: str,
        *,
        read: Callable[[str], list[tuple[str]]],
        write: Callable[[str, tuple[object, ...]], None],
        on_ring: Callable[[], None],
    ) -> None:
        self._read, self._write = read, write
        self._on_ring = on_ring
        tag = hashlib.sha1(os.path.abspath(bus_path).encode()).hexdigest()[:12]
        self.address = f"hpcbus-{tag}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._others: list[str] = []
        self._others_read = float("-inf")
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if SUPPORTED else None
        if self._sender is not None:
            self._sender.setblocking(False)

    def listen(self) -> None:
        """Start receiving rings (idempotent; only processes that wait need it)."""
        if not SUPPORTED or self._sock is not None:
            return
        with self._lock:
            if self._sock is not None:
                return
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind("\0" + self.address)
            sock.settimeout(1.0)  # so the listener notices close()
            self._sock = sock
            self._write(
                "INSERT OR REPLACE INTO doorbells VALUES (?, ?)", (self.address, os.getpid())
            )
            threading.Thread(
                target=self._listen, args=(sock,), name="bus-doorbell", daemon=True
            ).start()

    def _listen(self, sock: socket.socket) -> None:
        while self._sock is sock:
            try:
                data = sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if not data:
                return  # shut down
            self._on_ring()

    def ring(self) -> None:
        """Wake the other processes' waiting receivers (best effort)."""
        if self._sender is None:
            return
        now = time.monotonic()
        if now - self._others_read > _REFRESH_S:
            rows = self._read("SELECT address FROM doorbells")
            self._others = [a for (a,) in rows if a != self.address]
            self._others_read = now
        for address in self._others:
            try:
                self._sender.sendto(b"!", "\0" + address)
            except BlockingIOError:
                pass  # its buffer is full of rings already
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(address)  # its process is gone
            except OSError as exc:
                log.debug("ringing %s failed: %s", address, exc)

    def _forget(self, address: str) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._write("DELETE FROM doorbells WHERE address = ?", (address,))
        with contextlib.suppress(ValueError):
            self._others.remove(address)

    def close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(sqlite3.Error):
                self._write("DELETE FROM doorbells WHERE address = ?", (self.address,))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
