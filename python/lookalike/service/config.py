"""The service's configuration: a TOML file, then LOOKALIKE_* environment
variables, then command-line flags, each overriding the one before. With none of
them the service keeps its data in ./lookalike-data and encodes with the bundle
in ./lookalike-data/models/default (`lookalike model build-default --out
lookalike-data/models/default` builds it offline), one index per space of it.

    address = "127.0.0.1:50051"
    data_dir = "lookalike-data"
    model = "models/my-clip"             # a bundle folder (default: <data_dir>/models/default)
    [schema]
    category = "keyword"
    price = "numeric"
    [groups]                             # group graphs per value of these keyword attributes
    attributes = ["category"]            # (lookalike.index.groups; opt-in: 8M + 20 bytes a member)
    min_members = 4000                   # a value's group is built once this many products hold it
    [[spaces]]                           # optional: index parameters per space
    name = "joint"
    dim = 384
    storage = "float16"
    rerank = ""                          # no re-ranking copies (TOML has no null)
    [[spaces]]
    name = "visual"
    dim = 1280
    index = "ivf_pq"                     # IVF-PQ: trains itself on its first train_size vectors
    nlist = 1024                         # (exact scan until then); see SpaceConfig
    [limits]                             # bounds on one call's work, and on overload (see Limits)
    max_k = 1000
    [durability]
    fsync = "always"                     # always | interval | never
    [api_keys]
    "a-long-random-key-for-the-indexer" = "write"
    [feedback]                           # relevance feedback and stored shopper events
    beta = 0.75
    [tls]
    cert = "server.pem"
    key = "server.key"
    [cluster]                            # shard replicas over NATS JetStream: see cluster/config.py
    urls = ["nats://127.0.0.1:4222"]
    [router]                             # `lookalike serve --router`: see service/shardmap.py
    [[router.shards]]
    name = "shard-0"
    replicas = ["10.0.0.5:50051"]
    [duplicates]                         # DuplicatesService (lookalike.duplicates.finder)
    min_similarity = 0.95
    [zero_shot]                          # attributes read off product photos at upsert
    enabled = true
    vocabularies = { colour = ["red", "blue", "black"], pattern = ["striped", "plain"] }
    [same_style]                         # SearchRequest.ignore_colour
    source = "swatches"

Overload sheds instead of queueing: `workers` handler threads serve calls, at most
`limits.max_in_flight` of them doing work (default: workers - limits.handler_reserve);
one more is refused at once with RESOURCE_EXHAUSTED and a retry-after-ms trailer by a
reserve thread, which also keeps health checks answered. gRPC itself holds at most
workers + limits.max_queued calls and refuses the next at once (RESOURCE_EXHAUSTED
without the trailer).
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lookalike.cluster.config import ClusterConfig
from lookalike.duplicates.finder import DuplicatesConfig
from lookalike.encoders.zero_shot import ZeroShotConfig
from lookalike.index.collection import SpaceConfig
from lookalike.index.groups import GroupConfig
from lookalike.service.colour_free import SameStyleConfig
from lookalike.service.encoding import BatchingConfig
from lookalike.service.relevance_feedback import FeedbackConfig
from lookalike.service.security import TlsConfig
from lookalike.service.shardmap import RouterConfig
from lookalike.store.wal import FSYNC_POLICIES

log = logging.getLogger("lookalike.service")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one call may ask; beyond them a call gets INVALID_ARGUMENT
    (or RESOURCE_EXHAUSTED for max_in_flight) instead of hurting everyone else."""

    max_k: int = 1000                    # hits per page
    max_results: int = 1000              # offset + k: how deep pagination may go
    max_batch: int = 256                 # queries per SearchBatch; products per Upsert message
    max_ids: int = 10_000                # ids per Get or Delete
    max_image_bytes: int = 10 << 20      # an encoded image in a query or product
    max_image_pixels: int = 64 << 20     # width x height, checked before decoding (decompression bombs)
    max_message_bytes: int = 64 << 20    # any message, in or out
    # Calls doing work at once before RESOURCE_EXHAUSTED (with retry-after-ms); 0 = workers -
    # handler_reserve. Above that it is lowered to it, with a warning (see ServiceConfig.in_flight_limit).
    max_in_flight: int = 0
    retry_after_ms: int = 200            # suggested back-off sent with RESOURCE_EXHAUSTED
    # Filters nested in filters (Condition.nested), the outermost counting 1; protobuf itself
    # refuses to decode a message nested past its recursion limit (about 49 filters deep).
    max_filter_depth: int = 32
    max_filter_clauses: int = 1024       # conditions in one filter, counted at every depth
    # Refused before tokenising, not truncated: a longer text is a client's bug that truncation
    # would hide, and titles are stored and shown whole. Query texts, product titles and image_uri.
    max_text_chars: int = 4096
    max_keyword_chars: int = 256         # one keyword value of a product's attributes
    max_keywords: int = 256              # keyword values of one product, over all its attributes
    # Long side / short side of an image, checked from its header before its pixels are decoded.
    max_image_aspect_ratio: float = 20.0
    max_ef: int = 4096                   # SearchParams.ef (graph search width)
    max_nprobe: int = 4096               # SearchParams.nprobe (IVF lists visited)
    # Calls waiting for a handler thread beyond `workers`: past workers + max_queued, gRPC
    # refuses a call at once with RESOURCE_EXHAUSTED (without retry-after-ms: gRPC sends no
    # metadata then; clients back off as for retry_after_ms).
    max_queued: int = 16
    # Handler threads never taken by calls' work (max_in_flight <= workers - handler_reserve):
    # they answer health checks and refusals at once while every other thread is busy.
    handler_reserve: int = 2


@dataclass(frozen=True)
class DurabilityConfig:
    """How writes are made durable (store/wal.py, service/durable.py)."""

    # always: an acknowledgement waits for its fsync (shared by concurrent writers);
    # interval: fsync every fsync_interval_ms, acknowledge once written (a power loss may
    # lose that much; a process crash loses nothing); never: tests and throw-away data.
    fsync: str = "always"
    fsync_interval_ms: int = 100
    segment_bytes: int = 64 << 20        # log segment size; whole segments are removed after a snapshot
    snapshot_every_records: int = 10_000  # a snapshot after this many logged write batches...
    snapshot_every_seconds: float = 300.0  # ...or this long, whichever comes first (if anything was written)
    keep_snapshots: int = 2              # >= 2, so a damaged newest snapshot falls back to the one before
    # The background thread compacts a space's index (HnswIndex.compact) once deleted vectors
    # hold more than this share of its slots; checked when it wakes for a snapshot.
    compact_deleted_fraction: float = 0.2
    # Products acknowledged once logged (Upsert's ACKNOWLEDGE_LOGGED) that may wait for the
    # index insert; a write that would pass this waits before it is logged. Each holds its
    # vectors in memory until inserted (512 float32: 2 KiB a space).
    max_unindexed_products: int = 50_000

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"durability.fsync must be one of {', '.join(FSYNC_POLICIES)}, got {self.fsync!r}")
        if self.keep_snapshots < 1 or self.snapshot_every_records < 1 or self.snapshot_every_seconds <= 0:
            raise ValueError("durability: keep_snapshots and snapshot_every_records must be >= 1, "
                             "snapshot_every_seconds > 0")
        if self.max_unindexed_products < 1:
            raise ValueError(f"durability: max_unindexed_products must be >= 1, got {self.max_unindexed_products}")
        if not 0 < self.compact_deleted_fraction <= 1:
            raise ValueError("durability: compact_deleted_fraction must be in (0, 1], "
                             f"got {self.compact_deleted_fraction}")


def check_listen_address(name: str, address: str) -> None:
    """Refuses an address a server could not listen on, naming the setting: gRPC would
    otherwise accept a port such as 501000 and fail later with a vague bind error.
    host:port, with port 0 meaning "any free port"; IPv6 hosts in brackets."""
    host, colon, port = address.rpartition(":")
    if not colon or not host:
        raise ValueError(f"{name} {address!r} is not host:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{name} {address!r}: the port must be a number from 0 to 65535")


@dataclass(frozen=True)
class ServiceConfig:
    address: str = "127.0.0.1:50051"     # host:port; loopback unless you mean to expose it
    data_dir: str = "lookalike-data"     # snapshots, the write-ahead log and the catalog live here
    workers: int = 16                    # gRPC handler threads (native searches release the GIL)
    # The model bundle that encodes images and texts; "" = <data_dir>/models/default when it
    # exists (build it with `lookalike model build-default`), else none: vector queries only.
    model: str = ""
    device: str = "auto"                 # onnxruntime: auto (CUDA when it works, else CPU), cpu, cuda
    encoder_threads: int = 0             # onnxruntime threads per operator; 0 = every core
    encoder_spinning: bool = False       # those threads spin while they wait (see RuntimeConfig.spinning)
    batching: BatchingConfig = BatchingConfig()
    # The vector spaces and their indexes; empty = one per space of the model bundle, with
    # the default index parameters of SpaceConfig.
    spaces: tuple[SpaceConfig, ...] = ()
    default_space: str = ""              # "" = the first space
    schema: dict[str, str] = field(default_factory=dict)  # attribute name -> keyword|numeric|bool|timestamp
    # Keyword attributes whose values get group graphs in every HNSW space, once a value has
    # min_members products (lookalike.index.groups): a filter requiring such a value walks its
    # products only. Applied to a collection loaded from a snapshot too (built at start).
    groups: GroupConfig = GroupConfig()
    limits: Limits = Limits()
    durability: DurabilityConfig = DurabilityConfig()
    feedback: FeedbackConfig = FeedbackConfig()  # Rocchio weights, remembered searches, event retention
    # API key -> scope ("read": search, get, stats; "write": also upsert, delete). Empty: auth off.
    api_keys: dict[str, str] = field(default_factory=dict)
    tls: TlsConfig = TlsConfig()         # cert + key: TLS; client_ca too: mutual TLS
    metrics_address: str = ""            # host:port of the Prometheus /metrics endpoint; "" = off
    # host:port of the HTTP/JSON gateway and the browser console (lookalike.gateway); "" = off.
    # HTTPS with the [tls] certificate when TLS is on; the same API keys.
    http_address: str = ""
    # The shard map, used by `lookalike serve --router` (keys in service/shardmap.py).
    router: RouterConfig = RouterConfig()
    # Cluster mode (`lookalike serve --shard I` and `--router`): the NATS servers and the log's layout.
    cluster: ClusterConfig = ClusterConfig()
    duplicates: DuplicatesConfig = DuplicatesConfig()  # candidate threshold, scan bound, attribute names
    # Zero-shot attributes read off each product photo at upsert; when enabled, each
    # vocabulary adds a keyword attribute and its numeric <name>_confidence to the schema.
    zero_shot: ZeroShotConfig = ZeroShotConfig()
    same_style: SameStyleConfig = SameStyleConfig()   # how ignore_colour finds the colour directions

    def __post_init__(self) -> None:
        check_listen_address("address", self.address)
        for name in ("metrics_address", "http_address"):
            if getattr(self, name):
                check_listen_address(name, getattr(self, name))
        limits = self.limits
        if not 1 <= limits.handler_reserve < self.workers:
            raise ValueError(f"limits.handler_reserve is {limits.handler_reserve}: it must be >= 1 and below "
                             f"workers ({self.workers}), so that some threads do calls' work")
        if limits.max_in_flight < 0 or limits.max_queued < 0:
            raise ValueError("limits.max_in_flight and limits.max_queued must be >= 0")
        if self.groups.attributes:
            self.groups.check(self.effective_schema())

    def in_flight_limit(self) -> int:
        """Calls allowed to do work at once: limits.max_in_flight, at most workers -
        handler_reserve (a higher value is lowered to it with a warning: calls beyond
        the threads would queue inside gRPC instead of being refused)."""
        most = self.workers - self.limits.handler_reserve
        wanted = self.limits.max_in_flight
        if wanted > most:
            log.warning("limits.max_in_flight %d is above workers (%d) - limits.handler_reserve (%d): using %d",
                        wanted, self.workers, self.limits.handler_reserve, most)
        return min(wanted, most) if wanted else most

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
             **overrides: Any) -> ServiceConfig:
        """The defaults, overridden by the TOML file at ``path``, then by the
        environment (LOOKALIKE_ADDRESS, LOOKALIKE_DATA_DIR, LOOKALIKE_WORKERS), then
        by ``overrides`` whose value is not None."""
        config = cls()
        if path is not None:
            config = config._with_toml(Path(path))
        env = os.environ if env is None else env
        from_env = {"address": env.get("LOOKALIKE_ADDRESS"), "data_dir": env.get("LOOKALIKE_DATA_DIR"),
                    "workers": int(env["LOOKALIKE_WORKERS"]) if env.get("LOOKALIKE_WORKERS") else None}
        for source in (from_env, overrides):
            config = replace(config, **{k: v for k, v in source.items() if v is not None})
        return config

    def effective_schema(self) -> dict[str, str]:
        """The configured schema plus the attributes the server writes itself: the
        zero-shot ones and the duplicate flag, when they are enabled."""
        added = {**(self.zero_shot.schema() if self.zero_shot.enabled else {}), **self.duplicates.flag_schema()}
        clash = {n for n in added if n in self.schema and self.schema[n] != added[n]}
        if clash:
            raise ValueError(f"schema: {sorted(clash)} are written by zero_shot with types "
                             f"{ {n: added[n] for n in sorted(clash)} }; change the schema or the vocabularies")
        return {**self.schema, **added}

    def model_path(self) -> Path | None:
        """The bundle to load, or None for a vectors-only service."""
        if self.model:
            return Path(self.model)
        default = Path(self.data_dir) / "models" / "default"
        return default if (default / "manifest.json").is_file() else None

    def _with_toml(self, path: Path) -> ServiceConfig:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"config {path}: {e}") from e
        known = {f.name for f in fields(self)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"config {path}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(known))})")
        try:
            if "spaces" in data:
                data["spaces"] = tuple(SpaceConfig(**s) for s in data["spaces"])
            if "limits" in data:
                data["limits"] = Limits(**data["limits"])
            if "tls" in data:
                data["tls"] = TlsConfig(**data["tls"])
            if "batching" in data:
                data["batching"] = BatchingConfig(**data["batching"])
            if "durability" in data:
                data["durability"] = DurabilityConfig(**data["durability"])
            if "router" in data:
                data["router"] = RouterConfig.from_toml(data["router"])
            for key, kind in (("feedback", FeedbackConfig), ("duplicates", DuplicatesConfig), ("groups", GroupConfig),
                              ("zero_shot", ZeroShotConfig), ("same_style", SameStyleConfig),
                              ("cluster", ClusterConfig)):
                if key in data:
                    data[key] = kind(**data[key])
        except TypeError as e:
            raise ValueError(f"config {path}: {e}") from e
        return replace(self, **data)
