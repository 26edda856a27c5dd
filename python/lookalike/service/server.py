"""Starting and stopping the gRPC server.

    server = Server(ServiceConfig.load("lookalike.toml"))
    server.start()            # recovers the collection (snapshot + log), then reports SERVING
    server.wait()             # until stop() or a signal
    server.stop(grace=10)     # drains calls in flight, takes a last snapshot

Every acknowledged write is in the write-ahead log first (service/durable.py),
so a kill -9 loses nothing acknowledged; the next start replays it.

The model and collection served are those of the active index version
(store/versions.py): version 0 is the config's model with data_dir/snapshots;
after a re-index (AdminService, service/reindex.py) the version's own copy of
its bundle and its snapshots, whatever the config's `model` says.

Health (grpc.health.v1) says NOT_SERVING until the collection is loaded and
again once shutdown begins; server reflection lists the services for tools such
as grpcurl.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lookalike.index.collection import Collection, SpaceConfig
from lookalike.service.admin import AdminServicer
from lookalike.service.calls import InFlight
from lookalike.service.config import ServiceConfig
from lookalike.service.decoding import DecodeGuard
from lookalike.service.duplicates_servicer import DuplicatesServicer
from lookalike.service.durable import DurableCollection
from lookalike.service.observability import Metrics, ObservingInterceptor
from lookalike.service.security import ApiKeyInterceptor
from lookalike.service.encoding import ModelEncoder
from lookalike.service.feedback_servicer import FeedbackServicer
from lookalike.service.memory import MemoryTrimmer
from lookalike.service.reindex import Reindexer
from lookalike.service.colour_free import ColourFree
from lookalike.service.relevance import Relevance, load_relevance, zero_shot_tagger
from lookalike.service.relevance_feedback import SearchFeedback
from lookalike.service.replica_servicer import ReplicaServicer
from lookalike.service.router import RouterServicer
from lookalike.service.servicer import SearchServicer
from lookalike.service.shards import Shards
from lookalike.store.catalog import Catalog
from lookalike.store.feedback import FeedbackStore
from lookalike.store.versions import Versions
from lookalike.v1 import admin_pb2, admin_pb2_grpc, duplicates_pb2, duplicates_pb2_grpc, feedback_pb2, \
    feedback_pb2_grpc, search_pb2, search_pb2_grpc

if TYPE_CHECKING:
    from lookalike.service.cluster_node import ReplicaNode, RouterNode

log = logging.getLogger("lookalike.service")
SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name
FEEDBACK_SERVICE_NAME = feedback_pb2.DESCRIPTOR.services_by_name["FeedbackService"].full_name
DUPLICATES_SERVICE_NAME = duplicates_pb2.DESCRIPTOR.services_by_name["DuplicatesService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


class Server:
    def __init__(self, config: ServiceConfig, router: bool = False, shard: int | None = None) -> None:
        """`router`: serve the shards of config.router instead of a collection of
        its own (service/router.py), or with [cluster] the live replicas of the
        collection's log (service/cluster_router.py). `shard`: serve as a replica
        of that shard of the [cluster] (service/cluster_node.py)."""
        if router and not config.router.shards and not config.cluster.enabled:
            raise ValueError("a router needs its shard map: [[router.shards]] in the config (see service/shardmap.py),"
                             " or [cluster] urls")
        if shard is not None and (router or not config.cluster.enabled):
            raise ValueError("--shard runs a replica of a cluster: it needs [cluster] urls in the config, "
                             "and not --router")
        if router:
            _check_router_extras(config)
        self.config = config
        self.router = router
        self.shard = shard
        self._cluster_node: ReplicaNode | RouterNode | None = None
        self._stopped = threading.Event()
        limits = config.limits
        options = [("grpc.max_receive_message_length", limits.max_message_bytes),
                   ("grpc.max_send_message_length", limits.max_message_bytes)]
        self.metrics = Metrics()
        self._observing = ObservingInterceptor(self.metrics)
        interceptors = [self._observing]  # first: refused calls are counted and logged too
        if config.api_keys:
            interceptors.append(ApiKeyInterceptor(config.api_keys))
        interceptors.append(DecodeGuard())  # after the keys: a caller without one learns only that
        # Overload (see config.py): calls beyond the in-flight limit are refused by the threads
        # it leaves free; gRPC refuses calls beyond the threads plus a small queue.
        in_flight = InFlight(config.in_flight_limit())
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=config.workers,
                                                            thread_name_prefix="lookalike-rpc"),
                                 options=options, interceptors=interceptors,
                                 maximum_concurrent_rpcs=config.workers + limits.max_queued)
        self._memory = MemoryTrimmer()
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        reflection.enable_server_reflection((SERVICE_NAME, FEEDBACK_SERVICE_NAME, DUPLICATES_SERVICE_NAME,
                                             ADMIN_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self._grpc)
        if config.tls.enabled:
            self.port = self._grpc.add_secure_port(config.address, config.tls.server_credentials())
        else:
            self.port = self._grpc.add_insecure_port(config.address)
        if self.port == 0:
            raise OSError(f"cannot listen on {config.address}")
        # With port 0 in the config the system picks one: this is the real address.
        self.address = f"{config.address.rsplit(':', 1)[0]}:{self.port}"
        # Feedback, relevance feedback, duplicates and re-indexing belong to a
        # collection's server; a router serves the SearchService only.
        self._feedback_servicer: FeedbackServicer | None = None
        self._feedback_store: FeedbackStore | None = None
        self._duplicates: DuplicatesServicer | None = None
        self._admin: AdminServicer | None = None
        if router and config.cluster.enabled:
            from lookalike.service.cluster_router import ClusterRouterServicer  # nats-py: the cluster extra

            self._servicer = ClusterRouterServicer(config.limits, config.router.on_shard_failure, self.metrics,
                                                  in_flight)
        elif router:
            self._servicer = RouterServicer(config.limits, config.router.on_shard_failure, self.metrics, in_flight)
        elif shard is not None:
            self._servicer = ReplicaServicer(shard, config.limits, self.metrics, in_flight)
        else:
            search_feedback = SearchFeedback(config.feedback)
            self._servicer = SearchServicer(config.limits, self.metrics, search_feedback, in_flight)
            self._feedback_servicer = FeedbackServicer(search_feedback, config.limits, in_flight)
            feedback_pb2_grpc.add_FeedbackServiceServicer_to_server(self._feedback_servicer, self._grpc)
            self._duplicates = DuplicatesServicer(config.limits, config.duplicates,
                                                  Path(config.data_dir) / "duplicate-scan.json", in_flight)
            duplicates_pb2_grpc.add_DuplicatesServiceServicer_to_server(self._duplicates, self._grpc)
            self._admin = AdminServicer()
            admin_pb2_grpc.add_AdminServiceServicer_to_server(self._admin, self._grpc)
        search_pb2_grpc.add_SearchServiceServicer_to_server(self._servicer, self._grpc)
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.collection: Collection | None = None
        self.store: DurableCollection | None = None
        self._catalog: Catalog | None = None
        self.encoder: ModelEncoder | None = None
        self.shards: Shards | None = None
        self.versions: Versions | None = None
        self.reindexer: Reindexer | None = None
        self._retired_encoders: list[ModelEncoder] = []  # swapped out; calls in flight may still use them
        self._metrics_server = None
        self.metrics_port = 0
        self.gateway = None
        if config.http_address:  # the gateway adds its socket to the gRPC server, so before it starts
            from lookalike.gateway import Gateway

            self.gateway = Gateway(config, self._grpc, lambda: self.store.blobs if self.store else None)

    def start(self) -> None:
        """Listens at once (health answers NOT_SERVING), loads the model and the
        collection (or creates it; a router: connects to its shards), then serves."""
        self._grpc.start()
        try:
            if self.router and self.config.cluster.enabled:
                from lookalike.service.cluster_node import RouterNode

                self.encoder = self._load_encoder(self.config.model_path())
                tagger = zero_shot_tagger(self.config, self.encoder)
                self._cluster_node = node = RouterNode(self.config)
                self._servicer.attach_cluster(node.shards, self.encoder, node.log,
                                              ColourFree(self.encoder, self.config.same_style), tagger)
            elif self.router:
                self.encoder = self._load_encoder(self.config.model_path())
                self.shards = Shards(self.config.router, self.config.limits.max_message_bytes)
                self._servicer.attach(self.shards, self.encoder, ColourFree(self.encoder, self.config.same_style))
            elif self.shard is not None:
                self._start_replica()
            else:
                self._load()
                self._servicer.attach(self.store, self.encoder)
                self._serve_with_extras(self.encoder, self.collection, self._relevance)
                self._feedback_servicer.attach(self._feedback_store)
                store = self.store
                self.metrics.products.set_function(lambda: len(store.collection))
                self.metrics.unindexed.set_function(lambda: store.unindexed_products)
                self.reindexer = Reindexer(self.store, self.versions, self._servicer.write_gate, self._swap_model,
                                           self._open_encoder, self._model_path, self.config.spaces,
                                           self.config.default_space)
                self._admin.attach(self.reindexer, self.versions, self._model_id)
        except BaseException:
            self._grpc.stop(0)
            if self.gateway is not None:
                self.gateway.stop()
            raise
        self._watch_encoder_queues()
        self._memory.start()
        if self.config.metrics_address:
            self._metrics_server, self.metrics_port = self.metrics.serve(self.config.metrics_address)
        if self.gateway is not None:
            self.gateway.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving on %s", self.address)

    def _load(self) -> None:
        data = Path(self.config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.versions = Versions(data)
        removed = self.versions.prune()  # builds that a crash interrupted
        if removed:
            log.info("removed unfinished index version(s) %s", removed)
        active = self.versions.active
        self.encoder = self._load_encoder(self._model_path(active))
        self._catalog = Catalog(data / "catalog.sqlite3")
        feedback = self.config.feedback
        self._feedback_store = FeedbackStore(data / "feedback.sqlite3", max_events=feedback.max_events,
                                             retention_ms=int(feedback.retention_days * 86_400_000))
        # data/collection: where the collection was saved before the log and snapshots.
        self.store = DurableCollection(
            data, self.config.durability, self._catalog, legacy=data / "collection",
            new_collection=self._new_collection, snapshots_root=self.versions.snapshots_dir(active),
            metrics=self.metrics)
        self.collection = self.store.collection
        try:
            self._check_spaces_match_the_model()
            self._keep_configured_groups()
            self._relevance = load_relevance(self.config, self.encoder, self.collection)
        except ValueError:
            self.store.close(snapshot=False)
            raise

    def _start_replica(self) -> None:
        """A shard replica: the collection of the log's records (no local log,
        no re-index, feedback or duplicates services)."""
        from lookalike.service.cluster_node import ReplicaNode  # nats-py: the cluster extra

        self.encoder = self._load_encoder(self.config.model_path())
        self._cluster_node = node = ReplicaNode(
            self.config, self.shard, self.address, self.encoder.model_id if self.encoder else "",
            self._new_collection)
        self.collection = node.store.collection
        self._keep_configured_groups()
        self._servicer.attach(node.store, self.encoder)
        self.metrics.products.set_function(lambda: len(node.store.collection))
        node.observe(self.metrics)

    def _model_path(self, version: int) -> Path | None:
        """The bundle of an index version: its own copy, or the config's for version 0."""
        return self.versions.model_dir(version) or self.config.model_path()

    def _model_id(self, version: int) -> str:
        path = self._model_path(version)
        if path is None:
            return ""
        from lookalike.encoders import load_bundle

        manifest = load_bundle(path).manifest
        return f"{manifest.model_id}@{manifest.model_version}"

    def _load_encoder(self, path: Path | None) -> ModelEncoder | None:
        if path is None:
            log.info("no model bundle: vector and more-like-this queries only")
            return None
        encoder = self._open_encoder(path)
        log.info("model %s from %s, providers %s", encoder.model_id, path, encoder.encoder.providers)
        return encoder

    def _open_encoder(self, path: Path) -> ModelEncoder:
        from lookalike.encoders import Encoder, RuntimeConfig  # onnxruntime: only when there is a model

        runtime = RuntimeConfig(device=self.config.device, intra_op_threads=self.config.encoder_threads,
                                spinning=self.config.encoder_spinning,
                                max_pixels=self.config.limits.max_image_pixels,
                                max_aspect_ratio=self.config.limits.max_image_aspect_ratio)
        return ModelEncoder(Encoder(path, runtime), self.config.batching)

    def _serve_with_extras(self, encoder: ModelEncoder | None, collection: Collection, relevance: Relevance) -> None:
        """Serves the pair with the model's extras: the duplicate classifier, the
        zero-shot tagger and the colour directions."""
        self._duplicates.attach(self.store, encoder, relevance.classifier)
        finder = self._duplicates.finder
        self._servicer.serve(encoder, collection, relevance.colour_free, relevance.tagger,
                             finder.flagged if finder and self.config.duplicates.flag_on_upsert else None)

    def _swap_model(self, encoder: ModelEncoder | None, collection: Collection) -> None:
        """A re-index's swap (the write gate is closed): calls from now on use these.
        The new model's extras are loaded here; a model without what the config
        asks of it (zero-shot towers, a duplicate classifier for flag_on_upsert)
        serves without them, and the log says why."""
        try:
            relevance = load_relevance(self.config, encoder, collection)
        except ValueError as e:
            log.error("the new model serves without its extras (duplicates, zero-shot attributes, ignore_colour): %s",
                      e)
            relevance = Relevance(None, None, ColourFree(None))
        self._serve_with_extras(encoder, collection, relevance)
        if self.encoder is not None:
            self._retired_encoders.append(self.encoder)  # closed at stop: calls in flight may hold it
        self.encoder, self.collection, self._relevance = encoder, collection, relevance
        self._watch_encoder_queues()

    def _watch_encoder_queues(self) -> None:
        if self.encoder is not None:
            for kind, depth in self.encoder.queue_depths().items():
                self.metrics.encoder_queue.labels(kind).set_function(depth)

    def _new_collection(self) -> Collection:
        groups = self.config.groups
        return Collection(self._spaces(), self.config.effective_schema(), self.config.default_space or None,
                          groups=groups.attributes, group_min_members=groups.min_members)

    def _keep_configured_groups(self) -> None:
        """Gives a collection loaded from a snapshot the configured group graphs
        (the config may have changed since it was saved): built now, before serving."""
        wanted = self.config.groups
        if self.collection.groups != wanted:
            started = time.perf_counter()
            self.collection.configure_groups(wanted.attributes, wanted.min_members)
            log.info("group graphs of %s (from %d products a value) built in %.1f s",
                     list(wanted.attributes) or "no attribute", wanted.min_members, time.perf_counter() - started)

    def _spaces(self) -> tuple[SpaceConfig, ...]:
        """The configured spaces, or one per space of the model."""
        if self.config.spaces:
            return self.config.spaces
        if self.encoder is None:
            raise ValueError(f"no [[spaces]] in the config and no model bundle in {self.config.data_dir}/models/default:"
                             " build one with `lookalike model build-default --out "
                             f"{self.config.data_dir}/models/default`, or configure the spaces")
        return tuple(SpaceConfig(name, s.dim, s.metric)
                     for name, s in self.encoder.encoder.bundle.manifest.spaces.items())

    def _check_spaces_match_the_model(self) -> None:
        if self.encoder is None:
            return
        model_spaces = self.encoder.encoder.bundle.manifest.spaces
        for name, config in self.collection.spaces.items():
            if name in model_spaces and model_spaces[name].dim != config.dim:
                raise ValueError(f"space '{name}' has dimension {config.dim} but model {self.encoder.model_id} "
                                 f"writes {model_spaces[name].dim}: re-index with the model, or fix the config")

    def stop(self, grace: float = 10.0) -> None:
        """Refuses new calls, lets those in flight finish for up to `grace`
        seconds, then takes a last snapshot (the next start replays nothing)."""
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.gateway is not None:
            self.gateway.stop()
        self._grpc.stop(grace).wait()
        self._observing.requests.close()
        self._memory.stop()
        if self._duplicates is not None:
            self._duplicates.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        if self.reindexer is not None:
            self.reindexer.wait(timeout=grace)  # a job still running then dies with the process: restartable
        if self.store is not None:
            self.store.close()
        if self._cluster_node is not None:
            self._cluster_node.close()
        if self.shards is not None:
            self.shards.close()
        if self._catalog is not None:
            self._catalog.close()
        if self._feedback_store is not None:
            self._feedback_store.close()
        for encoder in (self.encoder, *self._retired_encoders):
            if encoder is not None:
                encoder.close()
        self._stopped.set()

    def wait(self) -> None:
        self._stopped.wait()

    def stop_on_signals(self, grace: float = 10.0) -> None:
        """SIGTERM / SIGINT stop the server gracefully (call from the main thread)."""
        def handler(signum: int, frame: object) -> None:
            log.info("signal %d: draining calls and saving", signum)
            threading.Thread(target=self.stop, args=(grace,), daemon=True).start()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            self._health.set(name, status)


def _check_router_extras(config: ServiceConfig) -> None:
    """The extras of a collection's server that a router cannot serve: refused
    at start rather than ignored."""
    if config.duplicates.flag_on_upsert:
        raise ValueError("duplicates.flag_on_upsert: a router does not flag duplicates at upsert (the lookup needs "
                         "the whole collection and the duplicate classifier in one server): turn it off for routers")
    if config.zero_shot.enabled and not config.cluster.enabled:
        raise ValueError("zero_shot: a router over a static shard map does not tag photos (its shards get vectors, "
                         "not photos): turn it off for the router, or run cluster mode, whose router tags them")
