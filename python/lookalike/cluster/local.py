"""A throw-away cluster on loopback for the cluster tests and benches:
nats-server nodes (one, or a JetStream cluster of n, on free ports with their
stores under a directory of the caller's), shard replicas (`lookalike serve
--shard I`) and routers (`lookalike serve --router`), each of which can be
killed (SIGKILL) and started again on the same store or data directory; a
writer that keeps what was acknowledged; a digest of what a replica holds, to
compare replicas. Not for production: run
NATS as docs/kubernetes.md says."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from lookalike.client import Client, Product

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Child:
    """A process of ours, waited for and killed (SIGKILL) by its id."""

    process: subprocess.Popen | None

    def _wait_until(self, ready: Callable[[], bool], timeout: float, late: str, exited: Callable[[], str]) -> None:
        """Polls ``ready()``; RuntimeError(``late``) after ``timeout`` s, or
        RuntimeError(``exited()``) if the process ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.process.poll() is not None:
                raise RuntimeError(exited())
            time.sleep(0.05)
        raise RuntimeError(late)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Node(_Child):
    name: str
    port: int
    cluster_port: int
    config: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.config.with_suffix(".log"), "ab")
        self.process = subprocess.Popen([NATS_SERVER, "-c", str(self.config)], stdout=log, stderr=log)
        self._wait_until(self._listening, 10, f"nats-server {self.name} did not listen on {self.port}",
                         lambda: f"nats-server {self.name} exited: see {self.config.with_suffix('.log')}")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False


@dataclass
class NatsServers:
    root: Path
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, n: int = 1) -> NatsServers:
        servers = cls(Path(root))
        servers.root.mkdir(parents=True, exist_ok=True)
        ports = [(free_port(), free_port()) for _ in range(n)]
        for i, (port, cluster_port) in enumerate(ports):
            store = servers.root / f"n{i}"
            lines = [f"server_name: n{i}", f"listen: 127.0.0.1:{port}",
                     f'jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 1GB }}']
            if n > 1:
                routes = ", ".join(f"nats-route://127.0.0.1:{c}" for j, (_, c) in enumerate(ports) if j != i)
                lines.append(f"cluster {{ name: lk, listen: 127.0.0.1:{cluster_port}, routes: [{routes}] }}")
            config = servers.root / f"n{i}.conf"
            config.write_text("\n".join(lines) + "\n")
            servers.nodes.append(Node(f"n{i}", port, cluster_port, config))
        try:
            for node in servers.nodes:
                node.start()
        except BaseException:
            servers.stop()
            raise
        return servers

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(node.url for node in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


class ServerProcess(_Child):
    """`lookalike serve` in a process of its own (``role``: its extra
    arguments), on a free loopback port, its data in root/name and its stderr
    in root/name.log."""

    def __init__(self, name: str, root: Path, role: Sequence[str]) -> None:
        self.name, self.root, self.role = name, Path(root), tuple(role)
        self.process: subprocess.Popen | None = None
        self.address = ""

    def start(self, config: str) -> None:
        """Starts the server with ``config`` (the TOML text, [cluster] included)."""
        path = self.root / f"{self.name}.toml"
        path.write_text(config)
        self.log = self.root / f"{self.name}.log"
        self._log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lookalike.cli", "serve", "--config", str(path), *self.role,
                 "--data-dir", str(self.root / self.name), "--address", "127.0.0.1:0"],
                stdout=subprocess.DEVNULL, stderr=log)

    def wait_serving(self, timeout: float = 60) -> None:
        """Waits for its "serving on" line and keeps the address it names."""
        def serving() -> bool:
            found = re.search(r"lookalike serving on (\S+)", self._new_log())
            if found:
                self.address = found.group(1)
            return found is not None

        self._wait_until(serving, timeout, f"{self.name} did not start in {timeout} s",
                         lambda: f"{self.name} exited:\n{self._new_log()[-3000:]}")

    def _new_log(self) -> str:
        """Its log since this start."""
        return self.log.read_bytes()[self._log_start:].decode(errors="replace")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class ReplicaProcess(ServerProcess):
    """`lookalike serve --shard I`."""

    def __init__(self, shard: int, name: str, root: Path) -> None:
        super().__init__(name, root, ("--shard", str(shard)))
        self.shard = shard


class RouterProcess(ServerProcess):
    """`lookalike serve --router` (cluster mode when its config has [cluster])."""

    def __init__(self, name: str, root: Path) -> None:
        super().__init__(name, root, ("--router",))


class AckedWriter(threading.Thread):
    """Upserts ``batches`` messages of ``make_batch(b)`` through a router,
    keeping the ids acknowledged and the highest stream sequence."""

    def __init__(self, address: str, batches: int, make_batch: Callable[[int], list[Product]]) -> None:
        super().__init__(daemon=True)
        self.address, self.batches, self.make_batch = address, batches, make_batch
        self.acknowledged: list[int] = []
        self.max_seq = 0
        self.failures: list[str] = []
        self.done_batches = 0

    def run(self) -> None:
        with Client(self.address, timeout=20) as client:
            for b in range(self.batches):
                batch = self.make_batch(b)
                try:
                    reply = client.upsert(batch, batch=len(batch))
                except grpc.RpcError as e:
                    self.failures.append(f"{e.code().name}: {e.details()}")
                    continue
                finally:
                    self.done_batches += 1
                for result in reply.results:
                    if result.status_code == 0:
                        self.acknowledged.append(result.id)
                        self.max_seq = max(self.max_seq, result.seq)
                    else:
                        self.failures.append(result.error)

    def wait_for(self, batches: int, timeout: float = 30) -> None:
        """Waits until ``batches`` messages were answered (or it ended, or ``timeout`` passed)."""
        deadline = time.monotonic() + timeout
        while self.done_batches < batches and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.02)


def holdings_digest(address: str, ids: Sequence[int], spaces: Sequence[str]) -> str:
    """"<count>:<SHA-256>" of the products of ``ids`` the server at ``address``
    holds: their ids, stored vectors of ``spaces`` and titles, in id order."""
    digest = hashlib.sha256()
    held = 0
    ids = sorted(ids)
    with Client(address) as client:
        for start in range(0, len(ids), 5000):  # a server's max_ids a call
            for product in client.get(ids[start:start + 5000], with_vectors=list(spaces)).products:
                held += 1
                digest.update(int(product.id).to_bytes(8, "little"))
                for space in spaces:
                    digest.update(product.vectors[space].data)
                digest.update(product.metadata.title.encode())
    return f"{held}:{digest.hexdigest()}"
