"""The SearchService of a router (`lookalike serve --router`): the same API as one
server, over a catalog split across shard servers by product id (shards.py).

- Queries: the router encodes an image, text or hybrid query once (it holds the
  model), sends the vector to every shard at once, and merges their top hits by
  score (ties: the smaller id first). A page at offset o of size k asks each
  shard for its best o + k (so the shards' limits.max_k must reach the router's
  limits.max_results). "More like this" fetches the product's vector from the
  shard that owns it, then fans out like a vector query, the owner leaving the
  product out by a filter. `ignore_colour` is served here, on the query
  vector (the shards get the plain vector and need no model); relevance
  feedback is refused (no remembered searches, rated products on several shards).
- Writes: a product goes to the shard that owns its id, to every replica. The
  router encodes its image and title into the vectors the shards need and sends
  those, not the image: one encoding a product however many replicas it has,
  the same vector on every replica (so results do not depend on the replica
  that answers), and shards that need no model. A product is acknowledged when
  `write_ack` replicas stored it. Deletes by id go to the owners; by filter, to
  every shard.
- A shard that does not answer (every replica tried) makes a search partial,
  naming the shard in `unanswered_shards`, or fails it with UNAVAILABLE, by
  `on_shard_failure`; other calls fail with UNAVAILABLE naming the shard.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
import numpy as np

from lookalike.service import convert
from lookalike.service.calls import InFlight, micros, rpc, search_batch, upsert_stream
from lookalike.service.colour_free import ColourFree
from lookalike.service.config import Limits
from lookalike.service.encoding import ModelEncoder, StageClock
from lookalike.service.errors import ServiceError, invalid, not_found
from lookalike.service.observability import Metrics
from lookalike.service.query_encoding import QueryEncoder
from lookalike.service.shards import FAILOVER_CODES, Answer, Shards
from lookalike.v1 import search_pb2, search_pb2_grpc


@dataclass(frozen=True)
class Layout:
    """What the shards hold, learned from the first shard that answers Stats."""

    default_space: str
    spaces: dict[str, search_pb2.SpaceStats]
    schema: dict[str, str]


def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class RouterServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, limits: Limits, on_shard_failure: str, metrics: Metrics | None = None,
                 in_flight: InFlight | None = None) -> None:
        """Serves once attach() hands it the shards; until then every call is UNAVAILABLE."""
        self._metrics = metrics or Metrics()
        self._limits = limits
        self._on_shard_failure = on_shard_failure
        self._in_flight = in_flight or InFlight(limits.max_in_flight)
        self._shards: Shards | None = None
        self._queries = QueryEncoder(None, limits)
        self._colour_free = ColourFree(None)
        self._layout: Layout | None = None
        self._layout_lock = threading.Lock()

    def attach(self, shards: Shards, encoder: ModelEncoder | None, colour_free: ColourFree | None = None) -> None:
        """``colour_free``: serves SearchRequest.ignore_colour here, on the query
        vector (default: without colour directions, so such searches are refused)."""
        self._queries = QueryEncoder(encoder, self._limits)
        self._colour_free = colour_free or self._colour_free
        self._shards = shards

    @property
    def ready(self) -> bool:
        return self._shards is not None

    # --- what the shards hold -------------------------------------------------------------

    def _shard_layout(self, deadline: float | None) -> Layout:
        """The spaces of the shards (asked once; a change of spaces on the shards
        needs a router restart)."""
        with self._layout_lock:
            if self._layout is None:
                answers = self._shards.read("Stats", {s: search_pb2.StatsRequest() for s in range(len(self._shards))},
                                            deadline)
                stats = next((a.response for _, a in sorted(answers.items()) if a.error is None), None)
                if stats is None:
                    raise ServiceError(grpc.StatusCode.UNAVAILABLE, "no shard answered: cannot learn the vector "
                                       "spaces; " + "; ".join(f"{self._shards.name(s)}: {a.message}"
                                                              for s, a in sorted(answers.items())))
                self._layout = Layout(stats.default_space, {s.name: s for s in stats.spaces},
                                      dict(stats.attribute_schema))
            return self._layout

    def _space(self, layout: Layout, name: str, query_kind: str | None = None) -> str:
        """As SearchServicer._space, over the spaces of the shards."""
        encoder = self._queries.encoder
        if not name and query_kind == "image" and encoder is not None and encoder.image_query_space in layout.spaces:
            return encoder.image_query_space
        name = name or layout.default_space
        if name not in layout.spaces:
            raise not_found(f"unknown vector space '{name}' (the shards have: {', '.join(sorted(layout.spaces))})")
        return name

    # --- search ---------------------------------------------------------------------------

    @rpc
    def Search(self, request: search_pb2.SearchRequest, context: grpc.ServicerContext) -> search_pb2.SearchResponse:
        return self._search(request, _deadline(context))

    @rpc
    def SearchBatch(self, request: search_pb2.SearchBatchRequest,
                    context: grpc.ServicerContext) -> search_pb2.SearchBatchResponse:
        return search_batch(request, context, self._limits.max_batch, lambda one: self._search(one, _deadline(context)))

    def _search(self, request: search_pb2.SearchRequest, deadline: float | None) -> search_pb2.SearchResponse:
        started = time.perf_counter()
        limits = self._limits
        offset, want = convert.page_window(request, limits.max_k, limits.max_results)
        convert.check_search_params(request.params, limits)
        if request.HasField("relevance"):
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               "relevance: a router does not serve relevance feedback (it remembers no searches, "
                               "and liked and disliked products live on several shards): search without it")

        clock = StageClock()
        outgoing, exclude = self._vector_request(request, deadline, clock)
        outgoing.k = want
        outgoing.page_token = ""
        requests = {s: outgoing for s in range(len(self._shards))}
        if exclude is not None:  # only its owner holds the product: it leaves it out by a filter
            owner = int(self._shards.owners([exclude])[0])
            requests[owner] = search_pb2.SearchRequest()
            requests[owner].CopyFrom(outgoing)
            requests[owner].filter.must_not.add().has_id.ids.append(exclude)

        t = time.perf_counter()
        responses, unanswered = self._settle(self._readers(request, deadline).read("Search", requests, deadline))
        search_s = time.perf_counter() - t
        hits = sorted((hit for r in responses.values() for hit in r.hits), key=lambda hit: (-hit.score, hit.id))
        response = search_pb2.SearchResponse(hits=hits[offset:want], unanswered_shards=unanswered)
        if len(hits) >= want and want < limits.max_results:
            response.next_page_token = convert.page_token(want)
        answered = list(responses.values())
        response.plan.CopyFrom(search_pb2.QueryPlan(
            plan=answered[0].plan.plan, ef=answered[0].plan.ef,
            estimated_matches=sum(r.plan.estimated_matches for r in answered),
            distances=sum(r.plan.distances for r in answered),
            filter_tests=sum(r.plan.filter_tests for r in answered),
            fell_back=any(r.plan.fell_back for r in answered),
            group_size=sum(r.plan.group_size for r in answered)))
        # Summed over the shards only when every shard counted them.
        for field in ("matches", "driver_size"):
            if all(r.plan.HasField(field) for r in answered):
                setattr(response.plan, field, sum(getattr(r.plan, field) for r in answered))
        response.timings.CopyFrom(search_pb2.StageTimings(
            decode_us=micros(clock.decode), preprocess_us=micros(clock.preprocess), encode_us=micros(clock.encode),
            search_us=micros(search_s), hydrate_us=max(r.timings.hydrate_us for r in answered),
            total_us=micros(time.perf_counter() - started)))
        self._metrics.observe_stages(response.timings)
        return response

    def _readers(self, request: search_pb2.SearchRequest | search_pb2.GetRequest, deadline: float | None) -> Shards:
        """The shards a search or Get reads from (cluster mode narrows them to
        the replicas that applied the request's min_seq)."""
        return self._shards

    def _vector_request(self, request: search_pb2.SearchRequest, deadline: float | None,
                        clock: StageClock) -> tuple[search_pb2.SearchRequest, int | None]:
        """The request as the shards get it: a vector query (encoded here once, or
        fetched from the owner of a product id; without its colour directions
        when it asks to ignore colour), and the id to leave out of the hits."""
        outgoing = search_pb2.SearchRequest()
        outgoing.CopyFrom(request)
        kind = request.query.WhichOneof("kind")
        if kind not in ("vector", "image", "text", "hybrid", "product_id"):
            raise invalid("query: set one of image, text, vector, product_id or hybrid")
        if kind == "vector" and not request.ignore_colour:
            return outgoing, None
        layout = self._shard_layout(deadline)
        space = self._space(layout, request.using, kind)
        exclude = None
        if kind == "vector":
            vector = request.query.vector
        elif kind == "product_id":
            exclude = request.query.product_id
            vector = self._stored_vector(exclude, space, self._readers(request, deadline), deadline)
        else:
            vector = convert.vector_to_proto(self._queries.query(request.query, space, clock))
        if request.ignore_colour:  # the shards have no encoder to find the colour directions with
            query = convert.vector_from_proto(vector, layout.spaces[space].dim, "query.vector")
            vector = convert.vector_to_proto(self._colour_free.apply(space, query))
            outgoing.ignore_colour = False
        outgoing.using = space
        outgoing.query.vector.CopyFrom(vector)
        return outgoing, exclude

    def _stored_vector(self, product_id: int, space: str, readers: Shards,
                       deadline: float | None) -> search_pb2.Vector:
        owner = int(self._shards.owners([product_id])[0])
        answer = readers.read("Get", {owner: search_pb2.GetRequest(ids=[product_id], with_vectors=[space])},
                              deadline)[owner]
        response = self._answered(owner, answer)
        if not response.products:
            raise not_found(f"query.product_id: no product {product_id}")
        return response.products[0].vectors[space]

    def _settle(self, answers: dict[int, Answer]) -> tuple[dict[int, search_pb2.SearchResponse], list[str]]:
        """The shards' search responses and the names of the shards that did not
        answer (partial policy); an error a shard gave about the request itself is
        the caller's error."""
        for s, answer in sorted(answers.items()):
            if answer.error is not None and answer.code not in FAILOVER_CODES:
                raise ServiceError(answer.code, f"shard {self._shards.name(s)}: {answer.message}")
        responses = {s: a.response for s, a in sorted(answers.items()) if a.error is None}
        failed = sorted(s for s, a in answers.items() if a.error is not None)
        if failed and (self._on_shard_failure == "error" or not responses):
            raise self._unavailable(failed, answers)
        return responses, [self._shards.name(s) for s in failed]

    def _unavailable(self, failed: list[int], answers: dict[int, Answer]) -> ServiceError:
        what = "; ".join(f"shard {self._shards.name(s)} did not answer ({answers[s].code.name}: {answers[s].message})"
                         for s in failed)
        return ServiceError(grpc.StatusCode.UNAVAILABLE, what)

    def _answered(self, shard: int, answer: Answer):
        """A read's response, or the caller's error: the shard's own (bad request)
        or UNAVAILABLE naming the shard."""
        if answer.error is None:
            return answer.response
        if answer.code in FAILOVER_CODES:
            raise self._unavailable([shard], {shard: answer})
        raise ServiceError(answer.code, f"shard {self._shards.name(shard)}: {answer.message}")

    # --- writes ---------------------------------------------------------------------------

    @rpc
    def Upsert(self, requests: Iterable[search_pb2.UpsertRequest],
               context: grpc.ServicerContext) -> search_pb2.UpsertResponse:
        return upsert_stream(requests, context, self._limits.max_batch,
                             lambda request: self._upsert_message(request.products, _deadline(context)))

    def _upsert_message(self, products: Iterable[search_pb2.Product],
                        deadline: float | None) -> list[search_pb2.ItemResult]:
        """One message's products, each sent to the replicas of its shard; results in
        the order of the products."""
        products = list(products)
        results: list[search_pb2.ItemResult | None] = [None] * len(products)
        by_shard: dict[int, list[int]] = defaultdict(list)
        ready: dict[int, search_pb2.Product] = {}
        def check(product: search_pb2.Product, where: str) -> None:
            convert.check_product_sizes(product, self._limits, where)
            self._shard_layout(deadline)

        for i, (product, from_image) in enumerate(zip(products, self._queries.product_images(products, check))):
            try:
                if isinstance(from_image, ServiceError):
                    raise from_image
                ready[i] = self._encoded(product, from_image, f"products[{i}]", deadline)
            except ServiceError as e:
                results[i] = search_pb2.ItemResult(id=product.id, status_code=e.code.value[0], error=e.message)
        if ready:
            for i, shard in zip(ready, self._shards.owners([p.id for p in ready.values()]).tolist()):
                by_shard[shard].append(i)
            answers = self._shards.write("Upsert", {s: search_pb2.UpsertRequest(products=[ready[i] for i in rows])
                                                    for s, rows in by_shard.items()}, deadline)
            for s, rows in by_shard.items():
                for j, i in enumerate(rows):
                    results[i] = self._item_result(s, products[i].id, j, answers[s])
        return results

    def _encoded(self, product: search_pb2.Product, from_image: dict[str, np.ndarray], where: str,
                 deadline: float | None) -> search_pb2.Product:
        """The product as its shard gets it: the vectors of the spaces it lacks
        computed here (from its image, encoded already, else its title, as a
        server would), the image left behind (a server keeps only the vectors of it)."""
        layout = self._shard_layout(deadline)
        encoder = self._queries.encoder
        clock = StageClock()
        lacking = [name for name in layout.spaces if name not in product.vectors]
        from_title = {}
        if product.title and encoder is not None and any(
                name not in from_image and name in encoder.text_spaces for name in lacking):
            from_title = self._queries.encode_all("text", product.title, clock, f"{where}.title")
        out = search_pb2.Product()
        out.CopyFrom(product)
        out.ClearField("image")
        for name in lacking:
            vector = from_image.get(name, from_title.get(name))
            if vector is not None:
                out.vectors[name].CopyFrom(convert.vector_to_proto(vector))
        return out

    def _item_result(self, shard: int, product_id: int, row: int, answers: list[Answer]) -> search_pb2.ItemResult:
        """One product's result from the replicas' answers: OK when enough stored it;
        a replica that failed it while a peer stored it is stale."""
        outcomes = []  # (replica, code, message)
        for a in answers:
            if a.error is not None:
                outcomes.append((a.replica, a.code, a.message))
            else:
                item = a.response.results[row]
                outcomes.append((a.replica, grpc.StatusCode.OK if item.status_code == 0 else
                                 _code(item.status_code), item.error))
        stored = sum(code == grpc.StatusCode.OK for _, code, _ in outcomes)
        failures = [(r, code, message) for r, code, message in outcomes if code != grpc.StatusCode.OK]
        if stored:
            for replica, code, message in failures:
                self._shards.mark_stale(shard, replica, f"missed product {product_id}: {code.name} {message}")
        needed = self._shards.needed_acks(shard)
        if stored >= needed:
            return search_pb2.ItemResult(id=product_id)
        replica, code, message = failures[0]
        if stored:  # some replicas have it, not enough: the caller should retry (upserts are idempotent)
            code, message = grpc.StatusCode.UNAVAILABLE, (
                f"stored on {stored} of the {needed} replicas of shard {self._shards.name(shard)} it needs; "
                f"{replica}: {message}")
        elif code in FAILOVER_CODES:
            message = f"shard {self._shards.name(shard)}, replica {replica}: {message}"
        return search_pb2.ItemResult(id=product_id, status_code=code.value[0], error=message)

    @rpc
    def Delete(self, request: search_pb2.DeleteRequest, context: grpc.ServicerContext) -> search_pb2.DeleteResponse:
        if isinstance(convert.delete_target(request, self._limits), list):
            requests = {s: search_pb2.DeleteRequest(ids=ids) for s, ids in self._by_owner(request.ids).items()}
        else:  # a filter: every shard deletes what matches there
            requests = {s: request for s in range(len(self._shards))}
        answers = self._shards.write("Delete", requests, _deadline(context))
        done = {s: self._acknowledged(s, replies) for s, replies in sorted(answers.items())}
        unknown = {i for r in done.values() for i in r.unknown_ids}
        return search_pb2.DeleteResponse(deleted=sum(r.deleted for r in done.values()),
                                         unknown_ids=[i for i in request.ids if i in unknown])

    def _acknowledged(self, shard: int, answers: list[Answer]):
        """A write's response from one replica that stored it, once enough did."""
        stored = [a for a in answers if a.error is None]
        for a in answers:
            if a.error is not None and stored:
                self._shards.mark_stale(shard, a.replica, f"missed a {type(stored[0].response).__name__}: "
                                                          f"{a.code.name} {a.message}")
        if len(stored) >= self._shards.needed_acks(shard):
            return stored[0].response
        failed = next(a for a in answers if a.error is not None)
        if failed.code not in FAILOVER_CODES and not stored:
            raise ServiceError(failed.code, failed.message)
        raise ServiceError(grpc.StatusCode.UNAVAILABLE,
                           f"shard {self._shards.name(shard)}: stored by {len(stored)} replica(s), "
                           f"{self._shards.needed_acks(shard)} needed; {failed.replica}: {failed.message} "
                           "(other shards may have applied it: retrying is safe)")

    def _by_owner(self, ids: Iterable[int]) -> dict[int, list[int]]:
        ids = list(ids)
        groups: dict[int, list[int]] = defaultdict(list)
        for id_, shard in zip(ids, self._shards.owners(ids).tolist()):
            groups[shard].append(id_)
        return groups

    # --- reads ----------------------------------------------------------------------------

    @rpc
    def Get(self, request: search_pb2.GetRequest, context: grpc.ServicerContext) -> search_pb2.GetResponse:
        if len(request.ids) > self._limits.max_ids:
            raise invalid(f"{len(request.ids)} ids in one call, at most {self._limits.max_ids}")
        deadline = _deadline(context)
        groups = self._by_owner(request.ids)
        answers = self._readers(request, deadline).read(
            "Get", {s: search_pb2.GetRequest(ids=ids, with_vectors=request.with_vectors) for s, ids in groups.items()},
            deadline)
        found = {p.id: p for s, a in sorted(answers.items()) for p in self._answered(s, a).products}
        response = search_pb2.GetResponse()
        for id_ in request.ids:
            if id_ in found:
                response.products.append(found[id_])
            else:
                response.missing_ids.append(id_)
        return response

    @rpc
    def Stats(self, request: search_pb2.StatsRequest, context: grpc.ServicerContext) -> search_pb2.StatsResponse:
        shards = self._shards
        answers = shards.read("Stats", {s: request for s in range(len(shards))}, _deadline(context))
        answered = [a.response for _, a in sorted(answers.items()) if a.error is None]
        if not answered:
            raise self._unavailable(sorted(answers), answers)
        first = answered[0]
        response = search_pb2.StatsResponse(products=sum(r.products for r in answered),
                                            default_space=first.default_space, attribute_schema=first.attribute_schema)
        encoder = self._queries.encoder
        response.model_id = encoder.model_id if encoder is not None else first.model_id
        layout = self._shard_layout(_deadline(context))
        response.image_query_space = self._space(layout, "", "image") if encoder is not None and encoder.image_spaces else ""
        response.text_query_space = self._space(layout, "", "text") if encoder is not None and encoder.text_spaces else ""
        for space in first.spaces:
            same = [s for r in answered for s in r.spaces if s.name == space.name]
            summed = response.spaces.add()
            summed.CopyFrom(space)
            summed.memory_bytes = sum(s.memory_bytes for s in same)
            summed.deleted = sum(s.deleted for s in same)
            summed.has_image_encoder = encoder is not None and space.name in encoder.image_spaces
            summed.has_text_encoder = encoder is not None and space.name in encoder.text_spaces
        for s, a in sorted(answers.items()):
            detail = response.shards.add(name=shards.name(s), stale_replicas=shards.stale_replicas(s))
            if a.error is None:
                detail.answered_by = a.replica
                detail.products = a.response.products
                detail.applied_seq = a.response.applied_seq
                detail.last_snapshot_seq = a.response.last_snapshot_seq
            else:
                detail.error = f"{a.code.name}: {a.message}"
        return response


def _code(value: int) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.value[0] == value), grpc.StatusCode.UNKNOWN)
