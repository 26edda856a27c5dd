"""The AdminService of lookalike.v1 (admin.proto): re-index with a new model,
follow the job, roll back, list the versions. The work is service/reindex.py's;
this module only translates. Every method needs the `write` scope (security.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import grpc

from lookalike.service.errors import ServiceError
from lookalike.service.reindex import Job, Reindexer
from lookalike.store.versions import Versions
from lookalike.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger("lookalike.service")

_KINDS = {"reindex": admin_pb2.JOB_KIND_REINDEX, "rollback": admin_pb2.JOB_KIND_ROLLBACK}
_STATES = {"running": admin_pb2.JOB_STATE_RUNNING, "succeeded": admin_pb2.JOB_STATE_SUCCEEDED,
           "failed": admin_pb2.JOB_STATE_FAILED}


def _admin_rpc(method: Callable) -> Callable:
    @functools.wraps(method)
    def wrapper(self: AdminServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            if self._reindexer is None:
                raise ServiceError(grpc.StatusCode.UNAVAILABLE, "the collection is still loading; retry shortly")
            return method(self, request, context)
        except ServiceError as e:
            context.abort(e.code, e.message)
        except Exception:
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed inside the server (see its log)")

    return wrapper


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self) -> None:
        """UNAVAILABLE until attach()."""
        self._reindexer: Reindexer | None = None
        self._versions: Versions | None = None
        self._model_id: Callable[[int], str] = lambda version: ""

    def attach(self, reindexer: Reindexer, versions: Versions, model_id: Callable[[int], str]) -> None:
        """``model_id(0)`` names version 0's model (it has no VERSION.json)."""
        self._reindexer, self._versions, self._model_id = reindexer, versions, model_id

    @_admin_rpc
    def StartReindex(self, request: admin_pb2.StartReindexRequest, context: grpc.ServicerContext) -> admin_pb2.ReindexJob:
        return job_to_proto(self._reindexer.start_reindex(request.model_path, request.carry_over_unencodable))

    @_admin_rpc
    def ReindexStatus(self, request: admin_pb2.ReindexStatusRequest,
                      context: grpc.ServicerContext) -> admin_pb2.ReindexJob:
        return job_to_proto(self._reindexer.job(request.job_id))

    @_admin_rpc
    def Rollback(self, request: admin_pb2.RollbackRequest, context: grpc.ServicerContext) -> admin_pb2.ReindexJob:
        return job_to_proto(self._reindexer.start_rollback(request.carry_over_unencodable))

    @_admin_rpc
    def ListVersions(self, request: admin_pb2.ListVersionsRequest,
                     context: grpc.ServicerContext) -> admin_pb2.ListVersionsResponse:
        versions = self._versions
        active, previous = versions.active, versions.previous
        response = admin_pb2.ListVersionsResponse()
        for number in versions.kept():
            info = versions.info(number, self._model_id(0))
            response.versions.add(version=number, model_id=info.model_id, active=number == active,
                                  previous=number == previous, created_unix=info.created_unix)
        return response


def job_to_proto(job: Job) -> admin_pb2.ReindexJob:
    return admin_pb2.ReindexJob(
        job_id=job.id, kind=_KINDS[job.kind], state=_STATES[job.state], done=job.done, total=job.total,
        failures=[admin_pb2.ProductFailure(id=i, reason=r) for i, r in job.failures], failed=job.failed,
        elapsed_seconds=job.elapsed, from_version=job.from_version, to_version=job.to_version,
        model_id=job.model_id, message=job.message)
