"""The search servers bench/service_peers.py compares, each behind one adapter:
lookalike (`lookalike serve` over gRPC), Milvus Lite (pymilvus; the milvus-lite
engine in its own local process) and Chroma (`chroma run`, over HTTP).

A System starts its server on loopback in a folder it is given, ingests a
Catalog, tells whether everything ingested is searchable, and gives a picklable
spec from which any process opens a Searcher (``open_searcher``): top-k ids of
a vector, optionally under a Where (one category and a price bound).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CATEGORIES = 20           # category c00 .. c19, each ~5% of the catalog
PRICE_RANGE = (1.0, 1000.0)


@dataclass(frozen=True)
class Catalog:
    vectors: np.ndarray   # (n, dim) float32, unit rows; product i has id i
    category: np.ndarray  # (n,) str
    price: np.ndarray     # (n,) float64
    in_stock: np.ndarray  # (n,) bool

    def __len__(self) -> int:
        return len(self.vectors)

    @staticmethod
    def of(vectors: np.ndarray, seed: int = 0) -> Catalog:
        """The vectors with seeded attributes: a uniform category, a price uniform
        in PRICE_RANGE (two decimals) and in stock 80% of the time."""
        rng = np.random.default_rng([seed, 7])
        n = len(vectors)
        category = np.array([f"c{c:02d}" for c in range(CATEGORIES)])[rng.integers(0, CATEGORIES, n)]
        price = np.round(rng.uniform(*PRICE_RANGE, n), 2)
        return Catalog(vectors, category, price, rng.random(n) < 0.8)


@dataclass(frozen=True)
class Where:
    """The filter of a filtered query: this category and a price below max_price."""

    category: str
    max_price: float

    def mask(self, catalog: Catalog) -> np.ndarray:
        return (catalog.category == self.category) & (catalog.price < self.max_price)


def filters_for(count: int, seed: int = 0) -> list[Where]:
    """Seeded filters, each letting ~2.5% of the catalog through (one category of 20,
    a price bound at the middle of the range)."""
    rng = np.random.default_rng([seed, 8])
    middle = sum(PRICE_RANGE) / 2
    return [Where(f"c{int(c):02d}", middle) for c in rng.integers(0, CATEGORIES, count)]


def exact_ids(catalog: Catalog, queries: np.ndarray, k: int, where: list[Where | None]) -> list[np.ndarray]:
    """Exact top-k ids by inner product of each query under its filter."""
    out = []
    for q, w in zip(queries, where):
        allowed = np.flatnonzero(w.mask(catalog)) if w is not None else np.arange(len(catalog))
        sims = catalog.vectors[allowed] @ q
        top = np.argsort(-sims, kind="stable")[:k]
        out.append(allowed[top])
    return out


@dataclass(frozen=True)
class Hnsw:
    M: int = 16
    ef_construction: int = 200
    ef_search: int = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (a server may run its
    engine in a child process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) * 1024 if match else 0
        todo.extend(children.get(p, []))
    return total


def _slices(n: int, batch: int) -> list[slice]:
    return [slice(s, min(s + batch, n)) for s in range(0, n, batch)]


class System:
    """A server under test; subclasses fill in start / ingest / spec."""

    name = ""

    def __init__(self, hnsw: Hnsw, writers: int = 2) -> None:
        self.hnsw, self.writers = hnsw, writers
        self.process: subprocess.Popen | None = None

    def ingest(self, catalog: Catalog, batch: int, progress=None) -> None:
        """All products, in batches written by `writers` threads at once."""
        done = [0]
        lock = threading.Lock()

        def write(part: slice) -> None:
            self.write(catalog, part)
            with lock:
                done[0] += part.stop - part.start
                if progress is not None:
                    progress(done[0])

        with ThreadPoolExecutor(self.writers) as pool:
            list(pool.map(write, _slices(len(catalog), batch)))

    def write(self, catalog: Catalog, part: slice) -> None:
        raise NotImplementedError

    def settle(self) -> None:
        """What the system's documentation says to do after a bulk load before
        searching it (nothing, unless a subclass says otherwise)."""

    def wait_indexed(self, count: int, seconds: float) -> bool | None:
        """Waits until the system's vector index holds all ``count`` products
        (bounded by ``seconds``): True, False at the bound, None where the bench
        cannot tell. A system that indexes before it acknowledges returns True
        at once."""
        return None

    def spec(self, ef: int | None = None, exact: bool = False) -> dict:
        raise NotImplementedError

    def prepare(self, ef: int) -> None:
        """Makes ``ef`` the search width of searchers opened from now on, for a
        system that sets it on the collection rather than per query."""

    def rss(self) -> int:
        return rss_bytes(self.process.pid) if self.process is not None else 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
            self.process = None


def _wait_for_line(process: subprocess.Popen, pattern: str, what: str, seconds: float = 120) -> re.Match:
    """Reads the process's output until a line matches; the rest is drained by a thread."""
    deadline = time.monotonic() + seconds
    seen = []
    for line in process.stdout:
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return match
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError(f"{what} did not start: {''.join(seen[-5:])}")


def _wait_for_port(process: subprocess.Popen, port: int, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {process.stdout.read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{what} did not listen on port {port} within {seconds:.0f} s")


# --- lookalike ---------------------------------------------------------------------

LOOKALIKE_CONFIG = """
[schema]
category = "keyword"
price = "numeric"
in_stock = "bool"
[[spaces]]
name = "clip"
dim = {dim}
M = {M}
ef_construction = {ef_construction}
ef_search = {ef_search}
"""


def serve_lookalike(directory: Path, config_text: str) -> tuple[subprocess.Popen, str]:
    """`lookalike serve` of ``config_text`` on a free loopback port, gRPC only;
    returns the process and its address."""
    config = directory / "lookalike.toml"
    config.write_text(config_text)
    process = subprocess.Popen([sys.executable, "-m", "lookalike.cli", "serve", "--config", str(config),
                                "--address", "127.0.0.1:0", "--http", "off", "--data-dir", str(directory / "data")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, _wait_for_line(process, r"serving on (127\.0\.0\.1:\d+)", "lookalike serve").group(1)


class Lookalike(System):
    """lookalike acknowledging each Upsert once its products are in the
    fsynced log and in the graph (ACKNOWLEDGE_SEARCHABLE, the default)."""

    name = "lookalike"
    acknowledge = 0  # search_pb2.ACKNOWLEDGE_UNSPECIFIED

    def start(self, directory: Path, dim: int) -> None:
        config = LOOKALIKE_CONFIG.format(dim=dim, **self.hnsw.__dict__)
        self.process, self.address = serve_lookalike(directory, config)
        from lookalike.client import Client
        self.client = Client(self.address, timeout=600)

    def write(self, catalog: Catalog, part: slice) -> None:
        from lookalike.client import Product, packed
        from lookalike.v1 import search_pb2

        products = [Product(id=i, vectors={"clip": packed(catalog.vectors[i])}, attributes={
            "category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[catalog.category[i]])),
            "price": search_pb2.AttributeValue(number=float(catalog.price[i])),
            "in_stock": search_pb2.AttributeValue(flag=bool(catalog.in_stock[i]))})
            for i in range(part.start, part.stop)]
        response = self.client.upsert(products, batch=len(products), acknowledge=self.acknowledge)
        failed = [r for r in response.results if r.status_code]
        if failed:
            raise RuntimeError(f"lookalike refused {len(failed)} products: {failed[0].error}")

    def wait_indexed(self, count: int, seconds: float) -> bool | None:
        return True  # an Upsert returns after its products are in the graph (and the fsynced log)

    def spec(self, ef: int | None = None, exact: bool = False) -> dict:
        return {"kind": self.name, "address": self.address, "ef": ef or 0, "exact": exact}

    def stop(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
        super().stop()


class LookalikeLogged(Lookalike):
    """lookalike acknowledging each Upsert once its products are in the fsynced
    log and checked (ACKNOWLEDGE_LOGGED); the graph insert follows in log order."""

    name = "lookalike-logged"

    def __init__(self, hnsw: Hnsw, writers: int = 2) -> None:
        super().__init__(hnsw, writers)
        from lookalike.v1 import search_pb2
        self.acknowledge = search_pb2.ACKNOWLEDGE_LOGGED

    def wait_indexed(self, count: int, seconds: float) -> bool | None:
        deadline = time.monotonic() + seconds
        while self.client.stats().unindexed_products:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


class _LookalikeSearcher:
    def __init__(self, spec: dict) -> None:
        from lookalike.client import Client
        from lookalike.v1 import filter_pb2, search_pb2

        self._pb, self._filters = search_pb2, filter_pb2
        self.client = Client(spec["address"], timeout=30)
        self.params = search_pb2.SearchParams(ef=spec["ef"], exact=spec["exact"])

    def search(self, vector: np.ndarray, k: int, where: Where | None) -> np.ndarray:
        pb, f = self._pb, self._filters
        request = pb.SearchRequest(query=pb.Query(vector=pb.Vector(
            data=np.ascontiguousarray(vector, "<f4").tobytes(), dtype=pb.DTYPE_FLOAT32, dim=len(vector))),
            k=k, params=self.params)
        if where is not None:
            request.filter.must.extend([f.Condition(match=f.Match(attribute="category", value=where.category)),
                                        f.Condition(range=f.Range(attribute="price", lt=where.max_price))])
        return np.array([h.id for h in self.client.stub.Search(request, timeout=30).hits], dtype=np.int64)

    def close(self) -> None:
        self.client.close()


# --- Milvus Lite -------------------------------------------------------------------

class Milvus(System):
    """Milvus Lite: the milvus-lite engine served as its own process on a loopback
    port (`python -m milvus_lite server`), reached by pymilvus over gRPC. ``index`` is
    a Milvus index type: HNSW, or FLAT for exact search."""

    name = "milvus-lite"
    COLLECTION = "catalog"

    def __init__(self, hnsw: Hnsw, writers: int = 2, index: str = "HNSW") -> None:
        super().__init__(hnsw, writers)
        self.index = index

    def start(self, directory: Path, dim: int) -> None:
        from pymilvus import DataType, MilvusClient

        self.directory = directory / "milvus"
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                                         str(directory / "milvus"), "--host", "127.0.0.1", "--port", str(port)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for_port(self.process, port, "milvus-lite")
        self.client = MilvusClient(uri=self.uri)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("category", DataType.VARCHAR, max_length=16)
        schema.add_field("price", DataType.DOUBLE)
        schema.add_field("in_stock", DataType.BOOL)
        index = self.client.prepare_index_params()
        params = {"M": self.hnsw.M, "efConstruction": self.hnsw.ef_construction} if self.index == "HNSW" else {}
        index.add_index(field_name="vector", index_type=self.index, metric_type="IP", params=params)
        self.client.create_collection(self.COLLECTION, schema=schema, index_params=index)

    def write(self, catalog: Catalog, part: slice) -> None:
        rows = [{"id": i, "vector": catalog.vectors[i], "category": str(catalog.category[i]),
                 "price": float(catalog.price[i]), "in_stock": bool(catalog.in_stock[i])}
                for i in range(part.start, part.stop)]
        self.client.insert(self.COLLECTION, rows)

    def settle(self) -> None:
        # Inserted rows sit in a memtable, searched by brute force; flush writes
        # them as segments, and a background worker builds each one's HNSW.
        self.client.flush(self.COLLECTION)

    def wait_indexed(self, count: int, seconds: float) -> bool | None:
        # describe_index counts rows as indexed at insert, before any HNSW
        # exists, so the bench looks where milvus-lite 3.2 keeps its segments:
        # <partition>/data/<segment>.parquet, with <partition>/indexes/<segment>.vector.hnsw.idx
        # once its graph is built.
        if self.index != "HNSW":
            return None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            segments = list(self.directory.glob("collections/*/partitions/*/data/*.parquet"))
            if segments and all((s.parent.parent / "indexes" / f"{s.stem}.vector.hnsw.idx").is_file() for s in segments):
                return True
            time.sleep(0.25)
        return False

    def spec(self, ef: int | None = None, exact: bool = False) -> dict:
        if exact and self.index != "FLAT":
            raise ValueError("exact search on Milvus needs a FLAT index (Milvus(..., index='FLAT'))")
        return {"kind": self.name, "uri": self.uri, "collection": self.COLLECTION,
                "ef": ef or self.hnsw.ef_search, "index": self.index}

    def stop(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
        super().stop()


class _MilvusSearcher:
    def __init__(self, spec: dict) -> None:
        from pymilvus import MilvusClient

        self.client = MilvusClient(uri=spec["uri"])
        self.collection = spec["collection"]
        self.params = {"params": {"ef": spec["ef"]}} if spec["index"] == "HNSW" else {}

    def search(self, vector: np.ndarray, k: int, where: Where | None) -> np.ndarray:
        expr = f'category == "{where.category}" and price < {where.max_price}' if where is not None else ""
        params = {**self.params, "params": {"ef": max(self.params["params"]["ef"], k)}} if self.params else {}
        hits = self.client.search(self.collection, data=[vector.tolist()], limit=k, filter=expr,
                                  search_params=params, output_fields=[])[0]
        return np.array([h["id"] for h in hits], dtype=np.int64)

    def close(self) -> None:
        self.client.close()


# --- Chroma ------------------------------------------------------------------------

class Chroma(System):
    """Chroma's own server (`chroma run`), called over HTTP by chromadb's HttpClient.
    Chroma has no exact search: on a tiny catalog an ef_search past its size is."""

    name = "chroma"
    COLLECTION = "catalog"

    def start(self, directory: Path, dim: int) -> None:
        import chromadb

        self.port = free_port()
        chroma = Path(sys.executable).parent / "chroma"
        self.process = subprocess.Popen([str(chroma), "run", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--path", str(directory / "chroma")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for_port(self.process, self.port, "chroma run")
        self.client = chromadb.HttpClient(host="127.0.0.1", port=self.port)
        self.collection = self.client.create_collection(self.COLLECTION, configuration={"hnsw": {
            "space": "ip", "max_neighbors": self.hnsw.M, "ef_construction": self.hnsw.ef_construction,
            "ef_search": self.hnsw.ef_search}})

    def write(self, catalog: Catalog, part: slice) -> None:
        ids = range(part.start, part.stop)
        self.collection.add(ids=[str(i) for i in ids], embeddings=catalog.vectors[part],
                            metadatas=[{"category": str(catalog.category[i]), "price": float(catalog.price[i]),
                                        "in_stock": bool(catalog.in_stock[i])} for i in ids])

    def prepare(self, ef: int) -> None:
        self.collection.modify(configuration={"hnsw": {"ef_search": ef}})

    def spec(self, ef: int | None = None, exact: bool = False) -> dict:
        if exact:
            raise ValueError("Chroma has no exact search; give a tiny catalog an ef_search past its size")
        if ef is not None:
            self.prepare(ef)
        return {"kind": self.name, "port": self.port, "collection": self.COLLECTION}


class _ChromaSearcher:
    def __init__(self, spec: dict) -> None:
        import chromadb

        self.client = chromadb.HttpClient(host="127.0.0.1", port=spec["port"])
        self.collection = self.client.get_collection(spec["collection"])

    def search(self, vector: np.ndarray, k: int, where: Where | None) -> np.ndarray:
        clause = {"$and": [{"category": where.category}, {"price": {"$lt": where.max_price}}]} if where else None
        result = self.collection.query(query_embeddings=[vector], n_results=k, where=clause, include=[])
        return np.array([int(i) for i in result["ids"][0]], dtype=np.int64)

    def close(self) -> None:
        pass


SYSTEMS = {system.name: system for system in (Lookalike, LookalikeLogged, Milvus, Chroma)}
_SEARCHERS = {"lookalike": _LookalikeSearcher, "lookalike-logged": _LookalikeSearcher,
              "milvus-lite": _MilvusSearcher, "chroma": _ChromaSearcher}


def open_searcher(spec: dict):
    """A Searcher of the system a spec (System.spec) describes, for this process."""
    return _SEARCHERS[spec["kind"]](spec)
