"""Throw-away nats-server processes on loopback for the cluster tests and
bench/cluster.py: one node, or a JetStream cluster of n, on free ports with
their stores under a directory of the caller's. Each node can be killed
(SIGKILL) and started again on the same ports and store. Not for production:
run NATS as docs/kubernetes.md says."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Node:
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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"nats-server {self.name} exited: see {self.config.with_suffix('.log')}")
                time.sleep(0.05)
        raise RuntimeError(f"nats-server {self.name} did not listen on {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


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
