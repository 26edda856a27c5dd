from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_KIND_UNSPECIFIED: _ClassVar[JobKind]
    JOB_KIND_REINDEX: _ClassVar[JobKind]
    JOB_KIND_ROLLBACK: _ClassVar[JobKind]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
JOB_KIND_UNSPECIFIED: JobKind
JOB_KIND_REINDEX: JobKind
JOB_KIND_ROLLBACK: JobKind
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState

class StartReindexRequest(_message.Message):
    __slots__ = ("model_path", "carry_over_unencodable")
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    CARRY_OVER_UNENCODABLE_FIELD_NUMBER: _ClassVar[int]
    model_path: str
    carry_over_unencodable: bool
    def __init__(self, model_path: _Optional[str] = ..., carry_over_unencodable: _Optional[bool] = ...) -> None: ...

class ReindexStatusRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("carry_over_unencodable",)
    CARRY_OVER_UNENCODABLE_FIELD_NUMBER: _ClassVar[int]
    carry_over_unencodable: bool
    def __init__(self, carry_over_unencodable: _Optional[bool] = ...) -> None: ...

class ProductFailure(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    reason: str
    def __init__(self, id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ReindexJob(_message.Message):
    __slots__ = ("job_id", "kind", "state", "done", "total", "failures", "failed", "elapsed_seconds", "from_version", "to_version", "model_id", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    kind: JobKind
    state: JobState
    done: int
    total: int
    failures: _containers.RepeatedCompositeFieldContainer[ProductFailure]
    failed: int
    elapsed_seconds: float
    from_version: int
    to_version: int
    model_id: str
    message: str
    def __init__(self, job_id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[ProductFailure, _Mapping]]] = ..., failed: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., model_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IndexVersion(_message.Message):
    __slots__ = ("version", "model_id", "active", "previous", "created_unix")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_FIELD_NUMBER: _ClassVar[int]
    version: int
    model_id: str
    active: bool
    previous: bool
    created_unix: float
    def __init__(self, version: _Optional[int] = ..., model_id: _Optional[str] = ..., active: _Optional[bool] = ..., previous: _Optional[bool] = ..., created_unix: _Optional[float] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[IndexVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[IndexVersion, _Mapping]]] = ...) -> None: ...
