from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScanState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCAN_STATE_UNSPECIFIED: _ClassVar[ScanState]
    SCAN_STATE_RUNNING: _ClassVar[ScanState]
    SCAN_STATE_DONE: _ClassVar[ScanState]
    SCAN_STATE_FAILED: _ClassVar[ScanState]
    SCAN_STATE_CANCELLED: _ClassVar[ScanState]
SCAN_STATE_UNSPECIFIED: ScanState
SCAN_STATE_RUNNING: ScanState
SCAN_STATE_DONE: ScanState
SCAN_STATE_FAILED: ScanState
SCAN_STATE_CANCELLED: ScanState

class FindDuplicatesRequest(_message.Message):
    __slots__ = ("product_id", "min_similarity", "min_probability", "max_candidates")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MIN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    product_id: int
    min_similarity: float
    min_probability: float
    max_candidates: int
    def __init__(self, product_id: _Optional[int] = ..., min_similarity: _Optional[float] = ..., min_probability: _Optional[float] = ..., max_candidates: _Optional[int] = ...) -> None: ...

class DuplicatePair(_message.Message):
    __slots__ = ("product_id", "duplicate_id", "similarity", "probability", "is_duplicate", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    IS_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    product_id: int
    duplicate_id: int
    similarity: float
    probability: float
    is_duplicate: bool
    features: _containers.ScalarMap[str, float]
    def __init__(self, product_id: _Optional[int] = ..., duplicate_id: _Optional[int] = ..., similarity: _Optional[float] = ..., probability: _Optional[float] = ..., is_duplicate: _Optional[bool] = ..., features: _Optional[_Mapping[str, float]] = ...) -> None: ...

class FindDuplicatesResponse(_message.Message):
    __slots__ = ("pairs", "space", "min_similarity")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[DuplicatePair]
    space: str
    min_similarity: float
    def __init__(self, pairs: _Optional[_Iterable[_Union[DuplicatePair, _Mapping]]] = ..., space: _Optional[str] = ..., min_similarity: _Optional[float] = ...) -> None: ...

class StartScanRequest(_message.Message):
    __slots__ = ("min_similarity", "min_probability", "max_pairs")
    MIN_SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MIN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MAX_PAIRS_FIELD_NUMBER: _ClassVar[int]
    min_similarity: float
    min_probability: float
    max_pairs: int
    def __init__(self, min_similarity: _Optional[float] = ..., min_probability: _Optional[float] = ..., max_pairs: _Optional[int] = ...) -> None: ...

class ScanStatus(_message.Message):
    __slots__ = ("scan_id", "state", "products_total", "products_done", "pairs_examined", "pairs_found", "truncated", "error", "elapsed_seconds")
    SCAN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_DONE_FIELD_NUMBER: _ClassVar[int]
    PAIRS_EXAMINED_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FOUND_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    scan_id: str
    state: ScanState
    products_total: int
    products_done: int
    pairs_examined: int
    pairs_found: int
    truncated: bool
    error: str
    elapsed_seconds: float
    def __init__(self, scan_id: _Optional[str] = ..., state: _Optional[_Union[ScanState, str]] = ..., products_total: _Optional[int] = ..., products_done: _Optional[int] = ..., pairs_examined: _Optional[int] = ..., pairs_found: _Optional[int] = ..., truncated: _Optional[bool] = ..., error: _Optional[str] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class ScanStatusRequest(_message.Message):
    __slots__ = ("scan_id",)
    SCAN_ID_FIELD_NUMBER: _ClassVar[int]
    scan_id: str
    def __init__(self, scan_id: _Optional[str] = ...) -> None: ...

class ScanResultsRequest(_message.Message):
    __slots__ = ("scan_id", "page_size", "page_token")
    SCAN_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scan_id: str
    page_size: int
    page_token: str
    def __init__(self, scan_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ScanResultsResponse(_message.Message):
    __slots__ = ("pairs", "next_page_token", "status")
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedCompositeFieldContainer[DuplicatePair]
    next_page_token: str
    status: ScanStatus
    def __init__(self, pairs: _Optional[_Iterable[_Union[DuplicatePair, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., status: _Optional[_Union[ScanStatus, _Mapping]] = ...) -> None: ...
