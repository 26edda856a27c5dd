"""A thin Python client of the lookalike.v1 API.

    with Client("127.0.0.1:50051") as client:
        client.upsert([Product(id=1, title="red dress", vectors={"clip": vec})])
        hits = client.search(vector=vec, k=10, filter=Filter(must=[...]), with_metadata=True).hits

Messages are the generated ones (lookalike.v1.search_pb2 / filter_pb2), so
everything the API offers is reachable; the helpers only spare the boilerplate.
Errors arrive as grpc.RpcError with the server's status code and message.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

import grpc
import numpy as np
import numpy.typing as npt

from lookalike.v1 import admin_pb2, admin_pb2_grpc, feedback_pb2, feedback_pb2_grpc, filter_pb2, search_pb2, \
    search_pb2_grpc

Filter = filter_pb2.Filter
Product = search_pb2.Product


def packed(vector: npt.ArrayLike) -> search_pb2.Vector:
    """A vector as the API's packed float32 message."""
    arr = np.ascontiguousarray(vector, dtype="<f4")
    if arr.ndim != 1:
        raise ValueError(f"one vector at a time, got shape {arr.shape}")
    return search_pb2.Vector(data=arr.tobytes(), dtype=search_pb2.DTYPE_FLOAT32, dim=arr.shape[0])


class _BearerKey(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
    """Adds `authorization: Bearer <key>` to every call."""

    def __init__(self, key: str) -> None:
        self._header = ("authorization", f"Bearer {key}")

    def _with_key(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_key(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._with_key(details), request_iterator)


class Client:
    def __init__(self, address: str, *, timeout: float = 10.0, api_key: str | None = None,
                 tls_root: bytes | None = None, tls_cert: bytes | None = None, tls_key: bytes | None = None,
                 tls: bool = False, max_message_bytes: int = 64 << 20) -> None:
        """``timeout`` is the deadline of each call, in seconds. ``api_key`` is
        sent as `authorization: Bearer` metadata. TLS is on with ``tls=True`` or any
        tls_* argument: ``tls_root`` is the PEM of the CA that signed the server
        (None: the system's roots); ``tls_cert`` + ``tls_key`` the client's own
        certificate for mutual TLS."""
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls or tls_root or tls_cert:
            credentials = grpc.ssl_channel_credentials(tls_root, tls_key, tls_cert)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        if api_key:
            self._channel = grpc.intercept_channel(self._channel, _BearerKey(api_key))
        self.stub = search_pb2_grpc.SearchServiceStub(self._channel)
        self.feedback_stub = feedback_pb2_grpc.FeedbackServiceStub(self._channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self._channel)
        self.timeout = timeout

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def search(self, *, vector: npt.ArrayLike | None = None, text: str | None = None, image: bytes | None = None,
               product_id: int | None = None, k: int = 10, using: str = "", filter: Filter | None = None,
               with_metadata: bool = False, page_token: str = "",
               params: search_pb2.SearchParams | None = None,
               relevance: search_pb2.RelevanceFeedback | None = None,
               ignore_colour: bool = False) -> search_pb2.SearchResponse:
        """One query: exactly one of vector, text, image (both text and image: a
        hybrid query, weighted equally) or product_id; or none of them with
        ``relevance.search_id`` (the query of that earlier search).
        ``ignore_colour``: the same style in any colour (SearchRequest.ignore_colour)."""
        if image is not None and text is not None:
            query = search_pb2.Query(hybrid=search_pb2.HybridQuery(image=image, text=text))
        elif vector is not None:
            query = search_pb2.Query(vector=packed(vector))
        elif text is not None:
            query = search_pb2.Query(text=text)
        elif image is not None:
            query = search_pb2.Query(image=image)
        elif product_id is not None:
            query = search_pb2.Query(product_id=product_id)
        elif relevance is not None and relevance.search_id:
            query = None
        else:
            raise ValueError("give one of vector, text, image or product_id (or relevance.search_id)")
        request = search_pb2.SearchRequest(query=query, k=k, using=using, with_metadata=with_metadata,
                                           page_token=page_token, params=params, relevance=relevance,
                                           ignore_colour=ignore_colour)
        if filter is not None:
            request.filter.CopyFrom(filter)
        return self.stub.Search(request, timeout=self.timeout)

    def upsert(self, products: Iterable[Product], batch: int = 128,
               acknowledge: int = search_pb2.ACKNOWLEDGE_UNSPECIFIED) -> search_pb2.UpsertResponse:
        """Streams products in messages of `batch`; one result per product.
        ``acknowledge``: UpsertRequest.acknowledge (ACKNOWLEDGE_LOGGED: once
        logged, before the index insert; each result's seq is then its min_seq)."""
        return self.stub.Upsert(_messages(products, batch, acknowledge), timeout=self.timeout)

    def upsert_soon(self, products: Iterable[Product], batch: int = 128,
                    acknowledge: int = search_pb2.ACKNOWLEDGE_UNSPECIFIED) -> grpc.Future:
        """upsert() without waiting: a Future of its UpsertResponse (result() raises its RpcError)."""
        return self.stub.Upsert.future(_messages(products, batch, acknowledge), timeout=self.timeout)

    def delete(self, ids: Sequence[int] = (), filter: Filter | None = None) -> search_pb2.DeleteResponse:
        request = search_pb2.DeleteRequest(ids=list(ids))
        if filter is not None:
            request.filter.CopyFrom(filter)
        return self.stub.Delete(request, timeout=self.timeout)

    def get(self, ids: Sequence[int], with_vectors: Sequence[str] = (), min_seq: int = 0) -> search_pb2.GetResponse:
        """``min_seq``: cluster mode, read your writes (GetRequest.min_seq)."""
        return self.stub.Get(search_pb2.GetRequest(ids=list(ids), with_vectors=list(with_vectors), min_seq=min_seq),
                             timeout=self.timeout)

    def stats(self) -> search_pb2.StatsResponse:
        return self.stub.Stats(search_pb2.StatsRequest(), timeout=self.timeout)

    def feedback(self, events: Iterable[feedback_pb2.FeedbackEvent]) -> feedback_pb2.FeedbackResponse:
        """Records shoppers' events on search hits (all or none)."""
        return self.feedback_stub.Feedback(feedback_pb2.FeedbackRequest(events=list(events)), timeout=self.timeout)

    def feedback_stats(self, since_ms: int = 0, until_ms: int = 0) -> feedback_pb2.FeedbackStatsResponse:
        """Online metrics of the events in [since_ms, until_ms) (0: open)."""
        return self.feedback_stub.Stats(feedback_pb2.FeedbackStatsRequest(since_ms=since_ms, until_ms=until_ms),
                                        timeout=self.timeout)

    # --- administration (a key with the write scope) -------------------------------------

    def start_reindex(self, model_path: str, carry_over_unencodable: bool = False) -> admin_pb2.ReindexJob:
        """Starts re-indexing with the bundle ``model_path`` names in the server's
        data_dir/models (relative to it, or absolute; nothing outside it)."""
        return self.admin.StartReindex(admin_pb2.StartReindexRequest(
            model_path=model_path, carry_over_unencodable=carry_over_unencodable), timeout=self.timeout)

    def reindex_status(self, job_id: str = "") -> admin_pb2.ReindexJob:
        return self.admin.ReindexStatus(admin_pb2.ReindexStatusRequest(job_id=job_id), timeout=self.timeout)

    def rollback(self, carry_over_unencodable: bool = False) -> admin_pb2.ReindexJob:
        return self.admin.Rollback(admin_pb2.RollbackRequest(carry_over_unencodable=carry_over_unencodable),
                                   timeout=self.timeout)

    def list_versions(self) -> admin_pb2.ListVersionsResponse:
        return self.admin.ListVersions(admin_pb2.ListVersionsRequest(), timeout=self.timeout)

    def wait_for_job(self, job_id: str, poll: float = 0.2, timeout: float = 3600.0,
                     progress=None) -> admin_pb2.ReindexJob:
        """Polls a job until it ends (or ``timeout`` seconds pass: TimeoutError);
        ``progress(job)`` is called after each poll."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.reindex_status(job_id)
            if progress is not None:
                progress(job)
            if job.state != admin_pb2.JOB_STATE_RUNNING:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still running after {timeout} s")
            time.sleep(poll)


def _messages(products: Iterable[Product], batch: int, acknowledge: int) -> Iterator[search_pb2.UpsertRequest]:
    """Products as Upsert messages of `batch`."""
    chunk: list[Product] = []
    for product in products:
        chunk.append(product)
        if len(chunk) == batch:
            yield search_pb2.UpsertRequest(products=chunk, acknowledge=acknowledge)
            chunk = []
    if chunk:
        yield search_pb2.UpsertRequest(products=chunk, acknowledge=acknowledge)
