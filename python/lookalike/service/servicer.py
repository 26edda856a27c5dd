"""The SearchService of lookalike.v1: queries, writes and reads over a Collection
and its Catalog.

Each call runs on a gRPC handler thread; the native searches and writes release
the GIL, so calls overlap. At most `limits.max_in_flight` calls are served at
once: one more gets RESOURCE_EXHAUSTED at once, with a `retry-after-ms` trailer,
instead of queueing behind work it cannot see.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import numpy as np

from lookalike.index import UnknownIdError
from lookalike.index.collection import Collection
from lookalike.service import convert
from lookalike.service.config import Limits
from lookalike.service.batching import Overloaded
from lookalike.service.durable import DurableCollection
from lookalike.service.encoding import ModelEncoder, StageClock
from lookalike.service.errors import ServiceError, invalid, key_error_text, not_found
from lookalike.service.observability import Metrics
from lookalike.store.catalog import Catalog, ProductRecord
from lookalike.store.records import UpsertBatch
from lookalike.v1 import search_pb2, search_pb2_grpc

log = logging.getLogger("lookalike.service")


class InFlight:
    """Counts calls being served; refuses one beyond the limit instead of queueing it."""

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)

    def __enter__(self) -> InFlight:
        if not self._slots.acquire(blocking=False):
            raise ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, "the server is at its limit of calls in flight; "
                                                                   "retry after the retry-after-ms trailer")
        return self

    def __exit__(self, *exc: object) -> None:
        self._slots.release()


def _rpc(method: Callable) -> Callable:
    """Runs a servicer method inside the in-flight limit and turns its failures
    into statuses (see errors.py)."""

    @functools.wraps(method)
    def wrapper(self: SearchServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            with self._in_flight:
                if self._collection is None:
                    raise ServiceError(grpc.StatusCode.UNAVAILABLE, "the collection is still loading; retry shortly")
                return method(self, request, context)
        except ServiceError as e:
            if e.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                context.set_trailing_metadata((("retry-after-ms", str(self._limits.retry_after_ms)),))
            context.abort(e.code, e.message)
        except Exception:
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed inside the server (see its log)")

    return wrapper


def _micros(seconds: float) -> int:
    return int(seconds * 1e6)


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, limits: Limits, metrics: Metrics | None = None) -> None:
        """Serves once attach() hands it a collection; until then every call is
        UNAVAILABLE (the server listens while it loads, so health checks answer)."""
        self._metrics = metrics or Metrics()
        self._store: DurableCollection | None = None
        self._collection: Collection | None = None
        self._catalog: Catalog | None = None
        self._limits = limits
        self._encoder: ModelEncoder | None = None
        self._in_flight = InFlight(limits.max_in_flight)

    def attach(self, store: DurableCollection, encoder: ModelEncoder | None) -> None:
        """Starts serving the collection and catalog of `store`, which also takes
        the writes; `encoder` turns images and texts into vectors (None: vectors only)."""
        self._store = store
        self._catalog = store.catalog
        self._encoder = encoder
        self._collection = store.collection

    # --- search -------------------------------------------------------------------------

    @_rpc
    def Search(self, request: search_pb2.SearchRequest, context: grpc.ServicerContext) -> search_pb2.SearchResponse:
        return self._search(request, context)

    @_rpc
    def SearchBatch(self, request: search_pb2.SearchBatchRequest,
                    context: grpc.ServicerContext) -> search_pb2.SearchBatchResponse:
        if len(request.requests) > self._limits.max_batch:
            raise invalid(f"{len(request.requests)} requests in one batch, at most {self._limits.max_batch}")
        results = []
        for i, one in enumerate(request.requests):
            _check_alive(context)
            try:
                results.append(search_pb2.SearchResult(response=self._search(one, context)))
            except ServiceError as e:
                results.append(search_pb2.SearchResult(status_code=e.code.value[0], error=f"requests[{i}]: {e.message}"))
        return search_pb2.SearchBatchResponse(results=results)

    def _search(self, request: search_pb2.SearchRequest, context: grpc.ServicerContext) -> search_pb2.SearchResponse:
        started = time.perf_counter()
        timings = search_pb2.StageTimings()
        limits = self._limits
        k = request.k or 10
        if k > limits.max_k:
            raise invalid(f"k is {k}, at most {limits.max_k}")
        offset = convert.page_offset(request.page_token, limits.max_results)
        want = min(offset + k, limits.max_results)
        space = self._space(request.using, request.query.WhichOneof("kind"))

        clock = StageClock()
        query, exclude = self._query_vector(request.query, space, clock)
        timings.decode_us, timings.preprocess_us, timings.encode_us = (
            _micros(clock.decode), _micros(clock.preprocess), _micros(clock.encode))
        clause = convert.filter_from_proto(request.filter) if request.HasField("filter") else None
        try:
            native = self._collection.compile_filter(clause) if clause is not None else None
        except KeyError as e:
            raise invalid(f"filter: {key_error_text(e)}") from None
        except (TypeError, ValueError) as e:
            raise invalid(f"filter: {e}") from None
        _check_alive(context)

        t = time.perf_counter()
        params = request.params
        hits = self._collection.search(space, query, want, filter=native, ef=params.ef or None,
                                       nprobe=params.nprobe or None, rerank=not params.no_rerank,
                                       exact=params.exact, exclude=exclude)
        timings.search_us = _micros(time.perf_counter() - t)

        ids, scores = hits.ids[offset:], hits.scores[offset:]
        response = search_pb2.SearchResponse(plan=_plan(hits.stats))
        if len(hits.ids) == want and want < limits.max_results:
            response.next_page_token = convert.page_token(want)
        t = time.perf_counter()
        metadata = self._metadata(ids) if request.with_metadata else {}
        timings.hydrate_us = _micros(time.perf_counter() - t)
        for id_, score in zip(ids.tolist(), scores.tolist()):
            hit = response.hits.add(id=id_, score=score)
            if id_ in metadata:
                hit.metadata.CopyFrom(metadata[id_])
        timings.total_us = _micros(time.perf_counter() - started)
        response.timings.CopyFrom(timings)
        self._metrics.observe_stages(timings)
        return response

    def _space(self, name: str, query_kind: str | None = None) -> str:
        """The space a request names; with none, an image query goes to the model's
        preferred image space (when the collection has it), anything else to the
        collection's default space."""
        if not name and query_kind == "image" and self._encoder is not None:
            preferred = self._encoder.image_query_space
            if preferred in self._collection.spaces:
                return preferred
        try:
            return self._collection.space(name).name
        except KeyError as e:
            raise not_found(key_error_text(e)) from None

    def _query_vector(self, query: search_pb2.Query, space: str, clock: StageClock) -> tuple[np.ndarray, int | None]:
        """The query as a vector of `space`, and the id to leave out of the hits."""
        kind = query.WhichOneof("kind")
        if kind == "vector":
            return convert.vector_from_proto(query.vector, self._collection.space(space).dim, "query.vector"), None
        if kind == "product_id":
            try:
                return self._collection.vectors(space, [query.product_id])[0], query.product_id
            except UnknownIdError:
                raise not_found(f"query.product_id: no product {query.product_id}") from None
        if kind == "image":
            return self._encode("image", query.image, space, clock, "query.image"), None
        if kind == "text":
            return self._encode("text", query.text, space, clock, "query.text"), None
        if kind == "hybrid":
            return self._hybrid(query.hybrid, space, clock), None
        raise invalid("query: set one of image, text, vector, product_id or hybrid")

    def _hybrid(self, h: search_pb2.HybridQuery, space: str, clock: StageClock) -> np.ndarray:
        if not h.image or not h.text:
            raise invalid("query.hybrid: both image and text are required")
        if h.image_weight < 0 or h.text_weight < 0 or not np.isfinite([h.image_weight, h.text_weight]).all():
            raise invalid("query.hybrid: weights must be finite and >= 0")
        wi, wt = (h.image_weight, h.text_weight) if (h.image_weight or h.text_weight) else (0.5, 0.5)
        image = self._encode("image", h.image, space, clock, "query.hybrid.image")
        text = self._encode("text", h.text, space, clock, "query.hybrid.text")
        mixed = wi * image + wt * text
        norm = float(np.linalg.norm(mixed))
        if norm == 0.0:
            raise invalid("query.hybrid: the weighted image and text vectors cancel out")
        return mixed / norm

    def _encode(self, kind: str, data: bytes | str, space: str, clock: StageClock, where: str) -> np.ndarray:
        """The vector of `space` for one image or text; every space the tower fills is
        computed by the same run, so _encode_all serves products."""
        vectors = self._encode_all(kind, data, clock, where)
        if space not in vectors:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"space '{space}' has no {kind} encoder: query it with a vector or a product id"
                               + (f" (the model's {kind} tower fills: {', '.join(sorted(vectors))})" if vectors else ""))
        return vectors[space]

    def _encode_all(self, kind: str, data: bytes | str, clock: StageClock, where: str) -> dict[str, np.ndarray]:
        encoder = self._encoder
        spaces = (encoder.image_spaces if kind == "image" else encoder.text_spaces) if encoder else frozenset()
        if not spaces:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"the server has no {kind} encoder: query it with a vector or a product id")
        if kind == "image" and len(data) > self._limits.max_image_bytes:
            raise invalid(f"{where}: the image is {len(data)} bytes, at most {self._limits.max_image_bytes}")
        try:
            return encoder.image(data, clock) if kind == "image" else encoder.text(data, clock)
        except Overloaded:
            raise ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, "the encoder queue is full; retry after the "
                                                                   "retry-after-ms trailer") from None
        except ValueError as e:  # an undecodable or oversized image, an empty text
            raise invalid(f"{where}: {e}") from None

    def _metadata(self, ids: np.ndarray) -> dict[int, search_pb2.ProductMetadata]:
        records = self._catalog.get(ids.tolist())
        schema = self._collection.schema
        out = {}
        for id_ in ids.tolist():
            record = records.get(id_, ProductRecord(id_))
            out[id_] = search_pb2.ProductMetadata(
                title=record.title, image_uri=record.image_uri,
                attributes=convert.attributes_to_proto(self._collection.attributes(id_), schema))
        return out

    # --- writes -------------------------------------------------------------------------

    @_rpc
    def Upsert(self, requests: Iterable[search_pb2.UpsertRequest],
               context: grpc.ServicerContext) -> search_pb2.UpsertResponse:
        results: list[search_pb2.ItemResult] = []
        for request in requests:
            _check_alive(context)
            if len(request.products) > self._limits.max_batch:
                error = f"{len(request.products)} products in one message, at most {self._limits.max_batch}"
                results.extend(search_pb2.ItemResult(id=p.id, status_code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                                     error=error) for p in request.products)
                continue
            results.extend(self._upsert_batch(request.products))
        return search_pb2.UpsertResponse(results=results)

    def _upsert_batch(self, products: Iterable[search_pb2.Product]) -> list[search_pb2.ItemResult]:
        """Checks each product on its own (a bad one fails alone), then applies the
        good ones together."""
        results, good = [], []
        for i, product in enumerate(products):
            try:
                good.append((len(results), self._prepared(product, f"products[{i}]")))
                results.append(search_pb2.ItemResult(id=product.id))
            except ServiceError as e:
                results.append(search_pb2.ItemResult(id=product.id, status_code=e.code.value[0], error=e.message))
        if good:
            self._apply([p for _, p in good])
        return results

    def _prepared(self, product: search_pb2.Product, where: str) -> dict[str, Any]:
        """A product's vectors for every space (sent > from its image > from its
        title), attributes and record, checked."""
        if product.id < 0:
            raise invalid(f"{where}: id must be >= 0, got {product.id}")
        unknown = set(product.vectors) - set(self._collection.spaces)
        if unknown:
            raise not_found(f"{where}: unknown vector space(s) {sorted(unknown)}")
        clock = StageClock()
        from_image = self._encode_all("image", product.image, clock, f"{where}.image") if product.image else {}
        from_title = {}
        vectors = {}
        for name, config in self._collection.spaces.items():
            if name in product.vectors:
                vectors[name] = convert.vector_from_proto(product.vectors[name], config.dim, f"{where}.vectors['{name}']")
            elif name in from_image:
                vectors[name] = from_image[name]
            elif product.title and self._encoder is not None and name in self._encoder.text_spaces:
                from_title = from_title or self._encode_all("text", product.title, clock, f"{where}.title")
                vectors[name] = from_title[name]
            else:
                raise invalid(f"{where}: no vector for space '{name}': send vectors['{name}']"
                              + self._how_to_fill(name))
            if config.metric == "cosine" and not vectors[name].any():
                raise invalid(f"{where}.vectors['{name}']: an all-zero vector has no direction")
        attributes = convert.attributes_from_proto(product.attributes, self._collection.schema, where)
        return {"id": product.id, "vectors": vectors, "attributes": attributes,
                "record": ProductRecord(product.id, product.title, product.image_uri)}

    def _how_to_fill(self, space: str) -> str:
        if self._encoder is None:
            return ""
        ways = [what for what, spaces in (("an image", self._encoder.image_spaces),
                                          ("a title", self._encoder.text_spaces)) if space in spaces]
        return f" or {' or '.join(ways)}" if ways else ""

    def _apply(self, products: list[dict[str, Any]]) -> None:
        """Logs the checked products (durably), applies them, and returns: then they may be acknowledged."""
        # The same id twice in one batch: the last one wins, as if sent one by one.
        latest = {p["id"]: p for p in products}
        products = list(latest.values())
        names = {name for p in products for name in p["attributes"]}
        self._store.upsert(UpsertBatch(
            ids=np.array([p["id"] for p in products], dtype=np.int64),
            vectors={name: np.stack([p["vectors"][name] for p in products]) for name in self._collection.spaces},
            attributes={name: [p["attributes"].get(name) for p in products] for name in names},
            titles=[p["record"].title for p in products], image_uris=[p["record"].image_uri for p in products]))

    @_rpc
    def Delete(self, request: search_pb2.DeleteRequest, context: grpc.ServicerContext) -> search_pb2.DeleteResponse:
        if request.ids and request.HasField("filter"):
            raise invalid("set one of ids and filter, not both")
        if request.HasField("filter"):
            clause = convert.filter_from_proto(request.filter)
            if clause is None:
                raise invalid("filter: an empty filter would delete every product; send the ids instead")
            ids = self._matching_ids(clause)
        else:
            if len(request.ids) > self._limits.max_ids:
                raise invalid(f"{len(request.ids)} ids in one call, at most {self._limits.max_ids}")
            ids = list(request.ids)
        unknown = self._store.delete(ids)
        gone = set(ids) - set(unknown)
        return search_pb2.DeleteResponse(deleted=len(gone), unknown_ids=unknown)

    def _matching_ids(self, clause: Any) -> list[int]:
        """Every product id the filter allows: an exact filtered scan of the
        default space asked for all of them (the scan scores each allowed product
        once; order does not matter here)."""
        n = len(self._collection)
        if n == 0:
            return []
        try:
            native = self._collection.compile_filter(clause)
        except KeyError as e:
            raise invalid(f"filter: {key_error_text(e)}") from None
        except (TypeError, ValueError) as e:
            raise invalid(f"filter: {e}") from None
        space = self._collection.default_space
        probe = np.zeros(self._collection.space(space).dim, dtype=np.float32)
        probe[0] = 1.0
        return self._collection.search(space, probe, n, filter=native, exact=True).ids.tolist()

    # --- reads --------------------------------------------------------------------------

    @_rpc
    def Get(self, request: search_pb2.GetRequest, context: grpc.ServicerContext) -> search_pb2.GetResponse:
        if len(request.ids) > self._limits.max_ids:
            raise invalid(f"{len(request.ids)} ids in one call, at most {self._limits.max_ids}")
        for name in request.with_vectors:
            self._space(name)
        found = [i for i in request.ids if i in self._collection]
        missing = [i for i in request.ids if i not in self._collection]
        metadata = self._metadata(np.array(found, dtype=np.int64))
        response = search_pb2.GetResponse(missing_ids=missing)
        vectors = {name: self._collection.vectors(name, found) for name in request.with_vectors} if found else {}
        for row, id_ in enumerate(found):
            product = response.products.add(id=id_, metadata=metadata[id_])
            for name, arr in vectors.items():
                product.vectors[name].CopyFrom(convert.vector_to_proto(arr[row]))
        return response

    @_rpc
    def Stats(self, request: search_pb2.StatsRequest, context: grpc.ServicerContext) -> search_pb2.StatsResponse:
        response = search_pb2.StatsResponse(products=len(self._collection),
                                            default_space=self._collection.default_space,
                                            attribute_schema=self._collection.schema,
                                            applied_seq=self._store.applied_seq,
                                            last_snapshot_seq=self._store.last_snapshot_seq)
        encoder = self._encoder
        if encoder is not None:
            response.model_id = encoder.model_id
        for name, config in self._collection.spaces.items():
            index = self._collection.index(name)
            response.spaces.add(name=name, dim=config.dim, metric=config.metric,
                                index_kind=self._collection.describe_index(name),
                                memory_bytes=index.memory_usage()["total_bytes"], deleted=index.deleted_count,
                                has_image_encoder=encoder is not None and name in encoder.image_spaces,
                                has_text_encoder=encoder is not None and name in encoder.text_spaces)
        return response


def _check_alive(context: grpc.ServicerContext) -> None:
    """Stops work for a call whose client gave up or whose deadline passed."""
    if not context.is_active():
        raise ServiceError(grpc.StatusCode.CANCELLED, "the call was cancelled")
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed")


def _plan(stats: Any) -> search_pb2.QueryPlan:
    return search_pb2.QueryPlan(plan=stats.plan, estimated_matches=stats.estimate or 0, ef=stats.ef,
                                distances=stats.distances)
