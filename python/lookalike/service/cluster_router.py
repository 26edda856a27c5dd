"""The SearchService of a cluster router (`lookalike serve --router` with
[cluster]): reads as a router's (router.py: encode once, fan out, merge, page)
over the live replicas of the membership (cluster_shards.py); writes go to the
collection's log (cluster/log.py) instead of to the replicas.

- Upsert: each product is checked and encoded here once (vectors for the
  spaces it lacks, from its image or title, as a server would), its image put
  in the object store under its SHA-256, then the products of one message are
  published as one record per shard. A product is acknowledged with its
  record's stream sequence once JetStream stored the record; the replicas
  apply it after that (reads are eventual unless they pass min_seq).
- Delete by ids: one record per owning shard; by filter: a record to every
  shard, evaluated by each replica at its place in the stream.
- A write is published under a fresh write id (message id = write id, shard,
  first product id): a publish retried across a leader change is stored once.
  Its shards' records are published at once (CollectionLog.publish_all).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import grpc
import numpy as np

from lookalike.cluster import log_records
from lookalike.cluster.log import CollectionLog, LogUnavailable
from lookalike.cluster.log_records import FilterDelete
from lookalike.encoders.zero_shot import ZeroShotTagger
from lookalike.index.attributes import AttributeStore
from lookalike.service import convert
from lookalike.service.calls import rpc
from lookalike.service.cluster_shards import LiveShards
from lookalike.service.colour_free import ColourFree
from lookalike.service.encoding import ModelEncoder
from lookalike.service.errors import ServiceError, invalid, key_error_text, not_found
from lookalike.service.router import Layout, RouterServicer, _deadline
from lookalike.store.records import DeleteBatch, UpsertBatch
from lookalike.v1 import search_pb2


class ClusterRouterServicer(RouterServicer):
    def attach_cluster(self, shards: LiveShards, encoder: ModelEncoder | None, log: CollectionLog,
                       colour_free: ColourFree | None = None, tagger: ZeroShotTagger | None = None) -> None:
        """``tagger``: [zero_shot], run here on the photos' vectors (the replicas
        get vectors, not photos), its attributes in the records."""
        self._log = log
        self._tagger = tagger
        self.attach(shards, encoder, colour_free)

    # --- reads ------------------------------------------------------------------------------

    def _readers(self, request: search_pb2.SearchRequest | search_pb2.GetRequest,
                 deadline: float | None) -> LiveShards:
        """With min_seq: waits (within the deadline) until every shard has a
        live replica that applied it, and reads only from such replicas."""
        shards: LiveShards = self._shards
        if not request.min_seq:
            return shards
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not shards.membership.wait(lambda: shards.ready_at(request.min_seq), timeout):
            behind = [f"shard-{i} at {max((m.caught_up_seq for m in shards.membership.live(i)), default=0)}"
                      for i in range(len(shards)) if not any(m.caught_up_seq >= request.min_seq
                                                             for m in shards.membership.live(i))]
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, f"min_seq {request.min_seq}: no live replica has "
                               f"applied it yet ({', '.join(behind)}); retry, or read without min_seq")
        return shards.at_least(request.min_seq)

    # --- writes -----------------------------------------------------------------------------

    def _upsert_message(self, products: Iterable[search_pb2.Product],
                        deadline: float | None) -> list[search_pb2.ItemResult]:
        products = list(products)
        results: list[search_pb2.ItemResult | None] = [None] * len(products)
        checked: dict[int, dict[str, Any]] = {}   # product id -> its checked form (the last one sent wins)
        rows: dict[int, list[int]] = defaultdict(list)
        def check(product: search_pb2.Product, where: str) -> None:
            self._check(product, where, deadline)

        for i, (product, from_image) in enumerate(zip(products, self._queries.product_images(products, check))):
            try:
                if isinstance(from_image, ServiceError):
                    raise from_image
                checked[product.id] = self._checked(product, from_image, f"products[{i}]", deadline)
                rows[product.id].append(i)
            except ServiceError as e:
                results[i] = search_pb2.ItemResult(id=product.id, status_code=e.code.value[0], error=e.message)
        by_shard: dict[int, list[int]] = defaultdict(list)
        for id_, shard in zip(checked, self._shards.owners(list(checked)).tolist()):
            by_shard[shard].append(id_)
        records = {}
        for shard, ids in by_shard.items():
            items = [checked[i] for i in ids]
            names = {name for item in items for name in item["attributes"]}
            records[shard] = UpsertBatch(ids=np.array(ids, dtype=np.int64),
                                         vectors={name: np.stack([item["vectors"][name] for item in items])
                                                  for name in items[0]["vectors"]},
                                         attributes={name: [item["attributes"].get(name) for item in items]
                                                     for name in names},
                                         titles=[item["title"] for item in items],
                                         image_uris=[item["image_uri"] for item in items],
                                         image_sha256=[item["digest"] for item in items])
        for shard, outcome in self._publish(records, deadline).items():
            for id_ in by_shard[shard]:
                for i in rows[id_]:
                    results[i] = _item(id_, outcome)
        return results

    def _check(self, product: search_pb2.Product, where: str, deadline: float | None) -> None:
        """What is checked of a product before its image is encoded."""
        if product.id < 0:
            raise invalid(f"{where}: id must be >= 0, got {product.id}")
        unknown = set(product.vectors) - set(self._shard_layout(deadline).spaces)
        if unknown:
            raise not_found(f"{where}: unknown vector space(s) {sorted(unknown)}")
        convert.check_product_sizes(product, self._limits, where)

    def _checked(self, product: search_pb2.Product, from_image: dict[str, np.ndarray], where: str,
                 deadline: float | None) -> dict[str, Any]:
        """A product as its record holds it: a vector for every space of the
        shards (sent, or encoded here from its image, encoded already, or its
        title), attributes checked against their schema, and its image in the
        object store."""
        layout = self._shard_layout(deadline)
        encoded = self._encoded(product, from_image, where, deadline)
        vectors = {}
        for name, space in layout.spaces.items():
            if name not in encoded.vectors:
                raise invalid(f"{where}: no vector for space '{name}': send vectors['{name}'], or an image or a "
                              "title the router's model encodes into it")
            vectors[name] = convert.vector_from_proto(encoded.vectors[name], space.dim, f"{where}.vectors['{name}']")
            if space.metric == "cosine" and not vectors[name].any():
                raise invalid(f"{where}.vectors['{name}']: an all-zero vector has no direction")
        attributes = convert.attributes_from_proto(product.attributes, layout.schema, where)
        if self._tagger is not None and self._tagger.config.space in from_image:
            self._check_tagged_schema(layout)
            attributes = self._tagger.merged(from_image[self._tagger.config.space], attributes)
        digest = self._stored_image(product.image, where) if product.image else ""
        return {"vectors": vectors, "attributes": attributes, "title": product.title,
                "image_uri": product.image_uri, "digest": digest}

    def _check_tagged_schema(self, layout: Layout) -> None:
        """The replicas would skip a record with attributes their schema lacks:
        refused here instead, before anything is published."""
        wrong = {n: t for n, t in self._tagger.config.schema().items() if layout.schema.get(n) != t}
        if wrong:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"zero_shot: the replicas' schema lacks {wrong}, which this router's [zero_shot] "
                               "writes: give the replicas the same [zero_shot] table (before their first start)")

    def _stored_image(self, image: bytes, where: str) -> str:
        try:
            return self._log.put_image(image)
        except LogUnavailable as e:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, f"{where}.image: {e}; nothing of this product "
                                                            "was written") from e

    def _publish(self, records: dict[int, log_records.Record],
                 deadline: float | None) -> dict[int, int | ServiceError]:
        """Each shard's record published at once under one fresh write id: its
        stream sequence once stored, or the error to answer with."""
        write_id = uuid.uuid4().hex
        sent = {}
        for shard, record in records.items():
            ids = getattr(record, "ids", np.empty(0)).tolist()
            message_id = f"{write_id}:{shard}:{ids[0]}+{len(ids) - 1}" if ids else f"{write_id}:{shard}"
            sent[shard] = (log_records.encode(record), message_id)
        return {shard: ServiceError(grpc.StatusCode.UNAVAILABLE, f"shard-{shard}: {outcome}")
                if isinstance(outcome, LogUnavailable) else outcome
                for shard, outcome in self._log.publish_all(sent, deadline).items()}

    @rpc
    def Delete(self, request: search_pb2.DeleteRequest, context: grpc.ServicerContext) -> search_pb2.DeleteResponse:
        deadline = _deadline(context)
        target = convert.delete_target(request, self._limits)
        if isinstance(target, list):
            records = {s: DeleteBatch(np.array(ids, dtype=np.int64)) for s, ids in self._by_owner(target).items()}
        else:
            self._check_filter(target, deadline)
            records = {s: FilterDelete(target) for s in range(len(self._shards))}
        outcomes = self._publish(records, deadline)
        failed = [outcome for _, outcome in sorted(outcomes.items()) if isinstance(outcome, ServiceError)]
        if failed:
            raise ServiceError(failed[0].code, f"{'; '.join(f.message for f in failed)} (the other shards took the "
                                               "delete: retrying is safe)")
        return search_pb2.DeleteResponse(seq=max(outcomes.values(), default=0))

    def _check_filter(self, clause: Any, deadline: float | None) -> None:
        """Names a filter's unknown attribute or wrong type here, as a server
        would, instead of publishing a record no replica can apply."""
        try:
            AttributeStore(self._shard_layout(deadline).schema).compile(clause)
        except KeyError as e:
            raise invalid(f"filter: {key_error_text(e)}") from None
        except (TypeError, ValueError) as e:
            raise invalid(f"filter: {e}") from None


def _item(product_id: int, outcome: int | ServiceError) -> search_pb2.ItemResult:
    if isinstance(outcome, ServiceError):
        return search_pb2.ItemResult(id=product_id, status_code=outcome.code.value[0], error=outcome.message)
    return search_pb2.ItemResult(id=product_id, seq=outcome)
