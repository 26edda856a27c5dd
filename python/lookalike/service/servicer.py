"""The SearchService of lookalike.v1: queries, writes and reads over a Collection
and its Catalog.

Each call runs on a gRPC handler thread; the native searches and writes release
the GIL, so calls overlap. At most ServiceConfig.in_flight_limit() calls (of all
the server's services) are served at once: one more gets RESOURCE_EXHAUSTED at
once, with a `retry-after-ms` trailer, instead of queueing behind work it cannot see.

A re-index replaces the model and the collection while calls run
(service/reindex.py). Each call therefore pins what serves it at its start (a
Serving, in a thread-local that `_collection`, `_encoder` and the model's
extras read), so a search never mixes the old model with the new collection;
it finishes on the old pair. Writes hold the WriteGate shared and pin the pair
again inside it: the swap takes the gate exclusively, so a write is checked,
encoded and applied wholly before the swap or wholly after it.
"""

from __future__ import annotations

import errno
import functools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, wait
from typing import Any, NamedTuple

import grpc
import numpy as np

from lookalike.encoders.zero_shot import ZeroShotTagger
from lookalike.index import UnknownIdError
from lookalike.index.collection import Collection
from lookalike.service import convert
from lookalike.service.config import Limits
from lookalike.service.calls import NativeStop, InFlight, check_alive, micros, rpc, search_batch, upsert_stream
from lookalike.service.colour_free import ColourFree
from lookalike.service.durable import DurableCollection
from lookalike.service.encoding import ModelEncoder, StageClock
from lookalike.service.query_encoding import QueryEncoder
from lookalike.service.errors import ServiceError, invalid, key_error_text, not_found
from lookalike.service.gate import WriteGate
from lookalike.service.hydrate import read_metadata
from lookalike.service.observability import Metrics
from lookalike.service.relevance_feedback import SearchFeedback, query_text
from lookalike.store.catalog import Catalog, ProductRecord
from lookalike.store.records import UpsertBatch
from lookalike.v1 import search_pb2, search_pb2_grpc


MAX_CATCH_UP_SECONDS = 60.0  # the longest a read with min_seq waits when its call has no deadline


class Serving(NamedTuple):
    """What serves calls together: the model, the collection, and the model's
    extras (None / an inert ColourFree when off)."""

    encoder: ModelEncoder | None
    collection: Collection
    queries: QueryEncoder
    colour_free: ColourFree                               # SearchRequest.ignore_colour
    tagger: ZeroShotTagger | None                         # zero-shot attributes of upserted photos
    flag_duplicates: Callable[..., dict[str, Any]] | None  # DuplicateFinder.flagged at upsert


def _pinned(method: Callable) -> Callable:
    """Runs the method with the Serving of the moment pinned for its thread."""

    @functools.wraps(method)
    def wrapper(self: SearchServicer, request: Any, context: grpc.ServicerContext) -> Any:
        self._pins.view = self._serving
        try:
            return method(self, request, context)
        finally:
            self._pins.view = None

    return wrapper


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, limits: Limits, metrics: Metrics | None = None, feedback: SearchFeedback | None = None,
                 in_flight: InFlight | None = None) -> None:
        """Serves once attach() hands it a collection; until then every call is
        UNAVAILABLE (the server listens while it loads, so health checks answer).
        ``feedback`` gives searches their ids and applies relevance feedback;
        ``in_flight``: the limit shared with the server's other services."""
        self._feedback = feedback or SearchFeedback()
        self._metrics = metrics or Metrics()
        self._store: DurableCollection | None = None
        self._serving: Serving | None = None
        self._pins = threading.local()
        self._catalog: Catalog | None = None
        self._limits = limits
        self._in_flight = in_flight or InFlight(limits.max_in_flight)
        self.write_gate = WriteGate()

    def attach(self, store: DurableCollection, encoder: ModelEncoder | None) -> None:
        """Starts serving the collection and catalog of `store`, which also takes
        the writes; `encoder` turns images and texts into vectors (None: vectors only)."""
        self._store = store
        self._catalog = store.catalog
        self.serve(encoder, store.collection)

    def serve(self, encoder: ModelEncoder | None, collection: Collection, colour_free: ColourFree | None = None,
              tagger: ZeroShotTagger | None = None,
              flag_duplicates: Callable[..., dict[str, Any]] | None = None) -> None:
        """Calls that start from now on use this model, collection and extras (at
        start, and at a re-index's swap under the write gate; calls in flight
        finish on what they pinned)."""
        self._serving = Serving(encoder, collection, QueryEncoder(encoder, self._limits),
                                colour_free or ColourFree(None), tagger, flag_duplicates)

    @property
    def ready(self) -> bool:
        return self._serving is not None

    @property
    def _view(self) -> Serving:
        return getattr(self._pins, "view", None) or self._serving

    @property
    def _collection(self) -> Collection:
        return self._view.collection

    @property
    def _encoder(self) -> ModelEncoder | None:
        return self._view.encoder

    @property
    def _queries(self) -> QueryEncoder:
        return self._view.queries

    # --- search -------------------------------------------------------------------------

    @rpc
    @_pinned
    def Search(self, request: search_pb2.SearchRequest, context: grpc.ServicerContext) -> search_pb2.SearchResponse:
        return self._search(request, context)

    @rpc
    @_pinned
    def SearchBatch(self, request: search_pb2.SearchBatchRequest,
                    context: grpc.ServicerContext) -> search_pb2.SearchBatchResponse:
        return search_batch(request, context, self._limits.max_batch, lambda one: self._search(one, context))

    def _search(self, request: search_pb2.SearchRequest, context: grpc.ServicerContext) -> search_pb2.SearchResponse:
        started = time.perf_counter()
        if request.min_seq:
            self._caught_up(request.min_seq, context)
        limits, collection = self._limits, self._collection  # the search's pair, looked up once
        offset, want = convert.page_window(request, limits.max_k, limits.max_results)
        params = request.params
        convert.check_search_params(params, limits)
        clock = StageClock()
        remembered = self._feedback.remembered(request)
        if remembered is not None:
            space, query, exclude, text = remembered.space, remembered.vector, remembered.exclude, remembered.text
        else:
            kind = request.query.WhichOneof("kind")
            space = self._space(request.using, kind)
            query, exclude = self._query_vector(request.query, kind, collection, space, clock)
            text = query_text(request.query)
        if request.ignore_colour:
            query = self._view.colour_free.apply(space, query)
        clause = convert.filter_from_proto(request.filter, limits) if request.HasField("filter") else None
        query, clause, applied = self._feedback.adjust(request, collection, space, query, clause)
        try:
            native = collection.compile_filter(clause) if clause is not None else None
        except KeyError as e:
            raise invalid(f"filter: {key_error_text(e)}") from None
        except (TypeError, ValueError) as e:
            raise invalid(f"filter: {e}") from None
        check_alive(context)

        t = time.perf_counter()
        with NativeStop(context) as stop:
            hits = collection.search(space, query, want, filter=native, ef=params.ef or None,
                                     nprobe=params.nprobe or None, rerank=not params.no_rerank,
                                     exact=params.exact, exclude=exclude, stop=stop)
        search_us = micros(time.perf_counter() - t)

        ids, scores = self._feedback.boost(space, text, hits.ids, hits.scores)
        if offset:
            ids, scores = ids[offset:], scores[offset:]
        response = search_pb2.SearchResponse(search_id=self._feedback.remember(space, query, text, exclude),
                                             relevance=applied)
        _fill_plan(response.plan, hits.stats)
        if len(hits.ids) == want and want < limits.max_results:
            response.next_page_token = convert.page_token(want)
        add_hit = response.hits.add
        if request.with_metadata:
            t = time.perf_counter()
            ids = ids.tolist()
            metadata = read_metadata(self._catalog, collection, ids)
            hydrate_us = micros(time.perf_counter() - t)
            schema = collection.schema
            for id_, score in zip(ids, scores.tolist()):
                found = metadata.get(id_)
                if found is not None:  # else deleted since the search found it: a hit never lacks its metadata
                    convert.metadata_into(add_hit(id=id_, score=score).metadata, found.record, found.attributes,
                                          schema)
        else:
            hydrate_us = 0
            for id_, score in zip(ids.tolist(), scores.tolist()):
                add_hit(id=id_, score=score)
        timings = response.timings
        timings.decode_us, timings.preprocess_us, timings.encode_us, timings.search_us, timings.hydrate_us = (
            micros(clock.decode), micros(clock.preprocess), micros(clock.encode), search_us, hydrate_us)
        timings.total_us = micros(time.perf_counter() - started)
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

    def _query_vector(self, query: search_pb2.Query, kind: str | None, collection: Collection, space: str,
                      clock: StageClock) -> tuple[np.ndarray, int | None]:
        """The query (whose oneof holds ``kind``) as a vector of `space`, and the id to leave out of the hits."""
        if kind == "vector":
            config = collection.space(space)
            return convert.vector_from_proto(query.vector, config.dim, "query.vector", config.metric), None
        if kind == "product_id":
            try:
                return collection.vectors(space, [query.product_id])[0], query.product_id
            except UnknownIdError:
                raise not_found(f"query.product_id: no product {query.product_id}") from None
        if kind in ("image", "text", "hybrid"):
            return self._queries.query(query, space, clock), None
        raise invalid("query: set one of image, text, vector, product_id or hybrid")

    # --- writes -------------------------------------------------------------------------

    @rpc
    @_pinned
    def Upsert(self, requests: Iterable[search_pb2.UpsertRequest],
               context: grpc.ServicerContext) -> search_pb2.UpsertResponse:
        return upsert_stream(requests, context, self._limits.max_batch, self._upsert_batch)

    def _upsert_batch(self, request: search_pb2.UpsertRequest) -> list[search_pb2.ItemResult]:
        """One message's products, wholly before or wholly after any re-index swap."""
        with self.write_gate.shared():
            self._pins.view = self._serving  # the pair of the moment, which no swap can change now
            return self._upsert_checked(request.products,
                                        logged_only=request.acknowledge == search_pb2.ACKNOWLEDGE_LOGGED)

    def _upsert_checked(self, products: Sequence[search_pb2.Product], logged_only: bool = False,
                        ) -> list[search_pb2.ItemResult]:
        """Checks each product on its own (a bad one fails alone), then applies the
        good ones together (``logged_only``: logs them, leaving the apply to the
        store's applier, and gives each result the log seq). The message's
        images are encoded together first, so they share the encoder's batches;
        the image of each product that passed its checks is stored meanwhile."""
        kept: dict[int, Future] = {}  # product -> its image's digest, being stored

        def keep_image(i: int) -> None:
            if products[i].image:
                kept[i] = self._store.blobs.put_soon(products[i].image)

        results, good = [], []
        view = self._view  # looked up once: it is the same for every product of the message
        try:
            from_images = view.queries.product_images(products, functools.partial(self._check, view.collection),
                                                      keep_image)
            for i, (product, from_image) in enumerate(zip(products, from_images)):
                try:
                    if isinstance(from_image, ServiceError):
                        raise from_image
                    # The image is durable before the log record that names it is written.
                    digest = self._kept_image(kept[i], f"products[{i}]") if i in kept else ""
                    good.append(self._prepared(view, product, from_image, digest, f"products[{i}]"))
                    results.append(search_pb2.ItemResult(id=product.id))
                except ServiceError as e:
                    results.append(search_pb2.ItemResult(id=product.id, status_code=e.code.value[0], error=e.message))
            if good:
                seq = self._apply(good, logged_only)
                if logged_only:
                    for result in results:
                        if not result.status_code:
                            result.seq = seq
        finally:  # logged (the log now names them) or failed: the sweep may judge them again
            wait(kept.values())
            self._store.blobs.unpin(f.result() for f in kept.values() if f.exception() is None)
        return results

    def _check(self, collection: Collection, product: search_pb2.Product, where: str) -> None:
        """What is checked of a product before its image is encoded."""
        if product.id < 0:
            raise invalid(f"{where}: id must be >= 0, got {product.id}")
        convert.check_product_sizes(product, self._limits, where)
        unknown = [name for name in product.vectors if name not in collection.spaces]
        if unknown:
            raise not_found(f"{where}: unknown vector space(s) {sorted(unknown)}")

    def _prepared(self, view: Serving, product: search_pb2.Product, from_image: dict[str, np.ndarray],
                  image_digest: str, where: str) -> dict[str, Any]:
        """A product's vectors for every space (sent > from its image, encoded
        already > from its title), attributes and record (its image stored
        already as ``image_digest``), checked."""
        clock = StageClock()
        from_title = {}
        vectors = {}
        collection, encoder, sent = view.collection, view.encoder, product.vectors
        for name, config in collection.spaces.items():
            if name in sent:
                vectors[name] = convert.vector_from_proto(sent[name], config.dim, f"{where}.vectors['{name}']")
            elif name in from_image:
                vectors[name] = from_image[name]
            elif product.title and encoder is not None and name in encoder.text_spaces:
                from_title = from_title or view.queries.encode_all("text", product.title, clock, f"{where}.title")
                vectors[name] = from_title[name]
            else:
                raise invalid(f"{where}: no vector for space '{name}': send vectors['{name}']"
                              + self._how_to_fill(name))
            convert.check_direction(vectors[name], config.metric, f"{where}.vectors['{name}']")
        attributes = convert.attributes_from_proto(product.attributes, collection.schema, where)
        tagger, flag_duplicates = view.tagger, view.flag_duplicates
        if tagger is not None and tagger.config.space in from_image:
            attributes = tagger.merged(from_image[tagger.config.space], attributes)
        if flag_duplicates is not None:
            attributes = flag_duplicates(product.id, vectors, product.title, attributes)
        return {"id": product.id, "vectors": vectors, "attributes": attributes,
                "record": ProductRecord(product.id, product.title, product.image_uri, image_digest)}

    @staticmethod
    def _kept_image(stored: Future, where: str) -> str:
        """The digest of an image being stored (put_soon), or the status of its failure."""
        try:
            return stored.result()
        except OSError as e:
            code = (grpc.StatusCode.RESOURCE_EXHAUSTED if e.errno in (errno.ENOSPC, errno.EDQUOT)
                    else grpc.StatusCode.UNAVAILABLE)
            raise ServiceError(code, f"{where}.image: cannot store the image ({e.strerror}); "
                                     "nothing of this product was applied, retry later") from e

    def _how_to_fill(self, space: str) -> str:
        if self._encoder is None:
            return ""
        ways = [what for what, spaces in (("an image", self._encoder.image_spaces),
                                          ("a title", self._encoder.text_spaces)) if space in spaces]
        return f" or {' or '.join(ways)}" if ways else ""

    def _apply(self, products: list[dict[str, Any]], logged_only: bool) -> int:
        """Logs the checked products (durably), applies them unless ``logged_only``
        (then the store's applier does, in log order), and returns their log seq:
        then they may be acknowledged."""
        # The same id twice in one batch: the last one wins, as if sent one by one.
        latest = {p["id"]: p for p in products}
        products = list(latest.values())
        names = {name for p in products for name in p["attributes"]}
        try:
            return self._store.upsert(self._batch(products, names), wait_applied=not logged_only)
        except (KeyError, ValueError, TypeError) as e:  # the store's own checks, before logging
            raise invalid(f"products: {key_error_text(e) if isinstance(e, KeyError) else e}") from None

    def _batch(self, products: list[dict[str, Any]], names: set[str]) -> UpsertBatch:
        return UpsertBatch(
            ids=np.array([p["id"] for p in products], dtype=np.int64),
            vectors={name: np.stack([p["vectors"][name] for p in products]) for name in self._collection.spaces},
            attributes={name: [p["attributes"].get(name) for p in products] for name in names},
            titles=[p["record"].title for p in products], image_uris=[p["record"].image_uri for p in products],
            image_sha256=[p["record"].image_sha256 for p in products])

    @rpc
    @_pinned
    def Delete(self, request: search_pb2.DeleteRequest, context: grpc.ServicerContext) -> search_pb2.DeleteResponse:
        with self.write_gate.shared():
            self._pins.view = self._serving
            return self._delete(request, context)

    def _delete(self, request: search_pb2.DeleteRequest, context: grpc.ServicerContext) -> search_pb2.DeleteResponse:
        target = convert.delete_target(request, self._limits)
        ids = target if isinstance(target, list) else self._matching_ids(target, context)
        unknown = self._store.delete(ids)
        gone = set(ids) - set(unknown)
        return search_pb2.DeleteResponse(deleted=len(gone), unknown_ids=unknown)

    def _matching_ids(self, clause: Any, context: grpc.ServicerContext) -> list[int]:
        """Every product id the filter allows (a scan that stops at the call's deadline)."""
        try:
            native = self._collection.compile_filter(clause)
        except KeyError as e:
            raise invalid(f"filter: {key_error_text(e)}") from None
        except (TypeError, ValueError) as e:
            raise invalid(f"filter: {e}") from None
        with NativeStop(context) as stop:
            return self._collection.ids(native, stop=stop).tolist()

    # --- reads --------------------------------------------------------------------------

    @rpc
    @_pinned
    def Get(self, request: search_pb2.GetRequest, context: grpc.ServicerContext) -> search_pb2.GetResponse:
        if len(request.ids) > self._limits.max_ids:
            raise invalid(f"{len(request.ids)} ids in one call, at most {self._limits.max_ids}")
        if request.min_seq:
            self._caught_up(request.min_seq, context)
        for name in request.with_vectors:
            self._space(name)
        collection = self._collection
        # The metadata of the ids, each read whole (hydrate.py); an id deleted meanwhile has none.
        metadata = read_metadata(self._catalog, collection, [i for i in request.ids if i in collection])
        found = [i for i in request.ids if i in metadata]  # deleted meanwhile: missing
        missing = [i for i in request.ids if i not in metadata]
        response = search_pb2.GetResponse(missing_ids=missing)
        vectors = {name: collection.vectors(name, found) for name in request.with_vectors} if found else {}
        schema = collection.schema
        for row, id_ in enumerate(found):
            product = response.products.add(id=id_)
            convert.metadata_into(product.metadata, metadata[id_].record, metadata[id_].attributes, schema)
            for name, arr in vectors.items():
                product.vectors[name].CopyFrom(convert.vector_to_proto(arr[row]))
        return response

    def _caught_up(self, min_seq: int, context: grpc.ServicerContext) -> None:
        """Waits, within the call's deadline, until the log record ``min_seq`` is
        applied (an ACKNOWLEDGE_LOGGED write is then searchable)."""
        store = self._store
        if min_seq > store.logged_seq:
            raise invalid(f"min_seq {min_seq}: no write has that seq (the last one logged is {store.logged_seq})")
        remaining = context.time_remaining()
        if not store.wait_applied(min_seq, MAX_CATCH_UP_SECONDS if remaining is None
                                  else min(remaining, MAX_CATCH_UP_SECONDS)):
            raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                               f"min_seq {min_seq}: not in the index yet ({store.unindexed_products} products wait "
                               f"for it); retry, or read without min_seq")

    @rpc
    @_pinned
    def Stats(self, request: search_pb2.StatsRequest, context: grpc.ServicerContext) -> search_pb2.StatsResponse:
        response = search_pb2.StatsResponse(products=len(self._collection),
                                            default_space=self._collection.default_space,
                                            attribute_schema=self._collection.schema,
                                            applied_seq=self._store.applied_seq,
                                            last_snapshot_seq=self._store.last_snapshot_seq,
                                            unindexed_products=self._store.unindexed_products)
        encoder = self._encoder
        if encoder is not None:
            response.model_id = encoder.model_id
            response.image_query_space = self._space("", "image") if encoder.image_spaces else ""
            response.text_query_space = self._space("", "text") if encoder.text_spaces else ""
        for name, config in self._collection.spaces.items():
            index = self._collection.index(name)
            response.spaces.add(name=name, dim=config.dim, metric=config.metric,
                                index_kind=self._collection.describe_index(name),
                                memory_bytes=index.memory_usage()["total_bytes"], deleted=index.deleted_count,
                                has_image_encoder=encoder is not None and name in encoder.image_spaces,
                                has_text_encoder=encoder is not None and name in encoder.text_spaces)
        return response


def _fill_plan(plan: search_pb2.QueryPlan, stats: Any) -> None:
    """A response's plan, written where it lies (building one and copying it in cost a third more)."""
    (plan.plan, plan.estimated_matches, plan.ef, plan.distances, plan.filter_tests, plan.fell_back,
     plan.group_size) = (stats.plan, stats.estimate or 0, stats.ef, stats.distances, stats.tested, stats.fell_back,
                         stats.group_size)
    # Unset when not counted (see QueryPlan in search.proto).
    if stats.matches is not None:
        plan.matches = stats.matches
    if stats.driver is not None:
        plan.driver_size = stats.driver
