from lookalike.v1 import filter_pb2 as _filter_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]

class Acknowledge(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACKNOWLEDGE_UNSPECIFIED: _ClassVar[Acknowledge]
    ACKNOWLEDGE_SEARCHABLE: _ClassVar[Acknowledge]
    ACKNOWLEDGE_LOGGED: _ClassVar[Acknowledge]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
ACKNOWLEDGE_UNSPECIFIED: Acknowledge
ACKNOWLEDGE_SEARCHABLE: Acknowledge
ACKNOWLEDGE_LOGGED: Acknowledge

class Vector(_message.Message):
    __slots__ = ("data", "dtype", "dim")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    dtype: DType
    dim: int
    def __init__(self, data: _Optional[bytes] = ..., dtype: _Optional[_Union[DType, str]] = ..., dim: _Optional[int] = ...) -> None: ...

class Keywords(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class AttributeValue(_message.Message):
    __slots__ = ("keywords", "number", "flag", "timestamp")
    KEYWORDS_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    keywords: Keywords
    number: float
    flag: bool
    timestamp: int
    def __init__(self, keywords: _Optional[_Union[Keywords, _Mapping]] = ..., number: _Optional[float] = ..., flag: _Optional[bool] = ..., timestamp: _Optional[int] = ...) -> None: ...

class ProductMetadata(_message.Message):
    __slots__ = ("title", "image_uri", "attributes", "image_sha256")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttributeValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttributeValue, _Mapping]] = ...) -> None: ...
    TITLE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SHA256_FIELD_NUMBER: _ClassVar[int]
    title: str
    image_uri: str
    attributes: _containers.MessageMap[str, AttributeValue]
    image_sha256: str
    def __init__(self, title: _Optional[str] = ..., image_uri: _Optional[str] = ..., attributes: _Optional[_Mapping[str, AttributeValue]] = ..., image_sha256: _Optional[str] = ...) -> None: ...

class Product(_message.Message):
    __slots__ = ("id", "image", "title", "image_uri", "attributes", "vectors")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttributeValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttributeValue, _Mapping]] = ...) -> None: ...
    class VectorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Vector
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    id: int
    image: bytes
    title: str
    image_uri: str
    attributes: _containers.MessageMap[str, AttributeValue]
    vectors: _containers.MessageMap[str, Vector]
    def __init__(self, id: _Optional[int] = ..., image: _Optional[bytes] = ..., title: _Optional[str] = ..., image_uri: _Optional[str] = ..., attributes: _Optional[_Mapping[str, AttributeValue]] = ..., vectors: _Optional[_Mapping[str, Vector]] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("image", "text", "vector", "product_id", "hybrid")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    HYBRID_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    text: str
    vector: Vector
    product_id: int
    hybrid: HybridQuery
    def __init__(self, image: _Optional[bytes] = ..., text: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., product_id: _Optional[int] = ..., hybrid: _Optional[_Union[HybridQuery, _Mapping]] = ...) -> None: ...

class HybridQuery(_message.Message):
    __slots__ = ("image", "text", "image_weight", "text_weight")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TEXT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    text: str
    image_weight: float
    text_weight: float
    def __init__(self, image: _Optional[bytes] = ..., text: _Optional[str] = ..., image_weight: _Optional[float] = ..., text_weight: _Optional[float] = ...) -> None: ...

class SearchParams(_message.Message):
    __slots__ = ("ef", "nprobe", "no_rerank", "exact")
    EF_FIELD_NUMBER: _ClassVar[int]
    NPROBE_FIELD_NUMBER: _ClassVar[int]
    NO_RERANK_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    ef: int
    nprobe: int
    no_rerank: bool
    exact: bool
    def __init__(self, ef: _Optional[int] = ..., nprobe: _Optional[int] = ..., no_rerank: _Optional[bool] = ..., exact: _Optional[bool] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "using", "filter", "k", "page_token", "params", "with_metadata", "relevance", "ignore_colour", "min_seq")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    USING_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    WITH_METADATA_FIELD_NUMBER: _ClassVar[int]
    RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    IGNORE_COLOUR_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    query: Query
    using: str
    filter: _filter_pb2.Filter
    k: int
    page_token: str
    params: SearchParams
    with_metadata: bool
    relevance: RelevanceFeedback
    ignore_colour: bool
    min_seq: int
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., using: _Optional[str] = ..., filter: _Optional[_Union[_filter_pb2.Filter, _Mapping]] = ..., k: _Optional[int] = ..., page_token: _Optional[str] = ..., params: _Optional[_Union[SearchParams, _Mapping]] = ..., with_metadata: _Optional[bool] = ..., relevance: _Optional[_Union[RelevanceFeedback, _Mapping]] = ..., ignore_colour: _Optional[bool] = ..., min_seq: _Optional[int] = ...) -> None: ...

class RelevanceFeedback(_message.Message):
    __slots__ = ("liked_ids", "disliked_ids", "search_id", "include_rated")
    LIKED_IDS_FIELD_NUMBER: _ClassVar[int]
    DISLIKED_IDS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RATED_FIELD_NUMBER: _ClassVar[int]
    liked_ids: _containers.RepeatedScalarFieldContainer[int]
    disliked_ids: _containers.RepeatedScalarFieldContainer[int]
    search_id: str
    include_rated: bool
    def __init__(self, liked_ids: _Optional[_Iterable[int]] = ..., disliked_ids: _Optional[_Iterable[int]] = ..., search_id: _Optional[str] = ..., include_rated: _Optional[bool] = ...) -> None: ...

class RelevanceApplied(_message.Message):
    __slots__ = ("alpha", "beta", "gamma", "liked_used", "disliked_used", "not_found_ids", "from_search_id", "rated_excluded")
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    LIKED_USED_FIELD_NUMBER: _ClassVar[int]
    DISLIKED_USED_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_IDS_FIELD_NUMBER: _ClassVar[int]
    FROM_SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    RATED_EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    beta: float
    gamma: float
    liked_used: int
    disliked_used: int
    not_found_ids: _containers.RepeatedScalarFieldContainer[int]
    from_search_id: str
    rated_excluded: bool
    def __init__(self, alpha: _Optional[float] = ..., beta: _Optional[float] = ..., gamma: _Optional[float] = ..., liked_used: _Optional[int] = ..., disliked_used: _Optional[int] = ..., not_found_ids: _Optional[_Iterable[int]] = ..., from_search_id: _Optional[str] = ..., rated_excluded: _Optional[bool] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: int
    score: float
    metadata: ProductMetadata
    def __init__(self, id: _Optional[int] = ..., score: _Optional[float] = ..., metadata: _Optional[_Union[ProductMetadata, _Mapping]] = ...) -> None: ...

class QueryPlan(_message.Message):
    __slots__ = ("plan", "estimated_matches", "ef", "distances", "matches", "driver_size", "filter_tests", "fell_back", "group_size")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_MATCHES_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    DISTANCES_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    DRIVER_SIZE_FIELD_NUMBER: _ClassVar[int]
    FILTER_TESTS_FIELD_NUMBER: _ClassVar[int]
    FELL_BACK_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    plan: str
    estimated_matches: int
    ef: int
    distances: int
    matches: int
    driver_size: int
    filter_tests: int
    fell_back: bool
    group_size: int
    def __init__(self, plan: _Optional[str] = ..., estimated_matches: _Optional[int] = ..., ef: _Optional[int] = ..., distances: _Optional[int] = ..., matches: _Optional[int] = ..., driver_size: _Optional[int] = ..., filter_tests: _Optional[int] = ..., fell_back: _Optional[bool] = ..., group_size: _Optional[int] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("decode_us", "preprocess_us", "encode_us", "search_us", "hydrate_us", "total_us")
    DECODE_US_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_US_FIELD_NUMBER: _ClassVar[int]
    ENCODE_US_FIELD_NUMBER: _ClassVar[int]
    SEARCH_US_FIELD_NUMBER: _ClassVar[int]
    HYDRATE_US_FIELD_NUMBER: _ClassVar[int]
    TOTAL_US_FIELD_NUMBER: _ClassVar[int]
    decode_us: int
    preprocess_us: int
    encode_us: int
    search_us: int
    hydrate_us: int
    total_us: int
    def __init__(self, decode_us: _Optional[int] = ..., preprocess_us: _Optional[int] = ..., encode_us: _Optional[int] = ..., search_us: _Optional[int] = ..., hydrate_us: _Optional[int] = ..., total_us: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "next_page_token", "plan", "timings", "search_id", "relevance", "unanswered_shards")
    HITS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    RELEVANCE_FIELD_NUMBER: _ClassVar[int]
    UNANSWERED_SHARDS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    next_page_token: str
    plan: QueryPlan
    timings: StageTimings
    search_id: str
    relevance: RelevanceApplied
    unanswered_shards: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., plan: _Optional[_Union[QueryPlan, _Mapping]] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., search_id: _Optional[str] = ..., relevance: _Optional[_Union[RelevanceApplied, _Mapping]] = ..., unanswered_shards: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class SearchResult(_message.Message):
    __slots__ = ("response", "status_code", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: SearchResponse
    status_code: int
    error: str
    def __init__(self, response: _Optional[_Union[SearchResponse, _Mapping]] = ..., status_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class SearchBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResult, _Mapping]]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("products", "acknowledge")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGE_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    acknowledge: Acknowledge
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ..., acknowledge: _Optional[_Union[Acknowledge, str]] = ...) -> None: ...

class ItemResult(_message.Message):
    __slots__ = ("id", "status_code", "error", "seq")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    id: int
    status_code: int
    error: str
    seq: int
    def __init__(self, id: _Optional[int] = ..., status_code: _Optional[int] = ..., error: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("results", "seq")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ItemResult]
    seq: int
    def __init__(self, results: _Optional[_Iterable[_Union[ItemResult, _Mapping]]] = ..., seq: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("ids", "filter")
    IDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    filter: _filter_pb2.Filter
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., filter: _Optional[_Union[_filter_pb2.Filter, _Mapping]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "unknown_ids", "seq")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_IDS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    unknown_ids: _containers.RepeatedScalarFieldContainer[int]
    seq: int
    def __init__(self, deleted: _Optional[int] = ..., unknown_ids: _Optional[_Iterable[int]] = ..., seq: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("ids", "with_vectors", "min_seq")
    IDS_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    MIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    with_vectors: _containers.RepeatedScalarFieldContainer[str]
    min_seq: int
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., with_vectors: _Optional[_Iterable[str]] = ..., min_seq: _Optional[int] = ...) -> None: ...

class StoredProduct(_message.Message):
    __slots__ = ("id", "metadata", "vectors")
    class VectorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Vector
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    id: int
    metadata: ProductMetadata
    vectors: _containers.MessageMap[str, Vector]
    def __init__(self, id: _Optional[int] = ..., metadata: _Optional[_Union[ProductMetadata, _Mapping]] = ..., vectors: _Optional[_Mapping[str, Vector]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("products", "missing_ids")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[StoredProduct]
    missing_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, products: _Optional[_Iterable[_Union[StoredProduct, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SpaceStats(_message.Message):
    __slots__ = ("name", "dim", "metric", "index_kind", "memory_bytes", "deleted", "has_image_encoder", "has_text_encoder")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_KIND_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    HAS_IMAGE_ENCODER_FIELD_NUMBER: _ClassVar[int]
    HAS_TEXT_ENCODER_FIELD_NUMBER: _ClassVar[int]
    name: str
    dim: int
    metric: str
    index_kind: str
    memory_bytes: int
    deleted: int
    has_image_encoder: bool
    has_text_encoder: bool
    def __init__(self, name: _Optional[str] = ..., dim: _Optional[int] = ..., metric: _Optional[str] = ..., index_kind: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., deleted: _Optional[int] = ..., has_image_encoder: _Optional[bool] = ..., has_text_encoder: _Optional[bool] = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ("products", "spaces", "default_space", "model_id", "attribute_schema", "applied_seq", "last_snapshot_seq", "shards", "image_query_space", "text_query_space", "unindexed_products")
    class AttributeSchemaEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    SPACES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_SPACE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_SEQ_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_QUERY_SPACE_FIELD_NUMBER: _ClassVar[int]
    TEXT_QUERY_SPACE_FIELD_NUMBER: _ClassVar[int]
    UNINDEXED_PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    products: int
    spaces: _containers.RepeatedCompositeFieldContainer[SpaceStats]
    default_space: str
    model_id: str
    attribute_schema: _containers.ScalarMap[str, str]
    applied_seq: int
    last_snapshot_seq: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardStats]
    image_query_space: str
    text_query_space: str
    unindexed_products: int
    def __init__(self, products: _Optional[int] = ..., spaces: _Optional[_Iterable[_Union[SpaceStats, _Mapping]]] = ..., default_space: _Optional[str] = ..., model_id: _Optional[str] = ..., attribute_schema: _Optional[_Mapping[str, str]] = ..., applied_seq: _Optional[int] = ..., last_snapshot_seq: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardStats, _Mapping]]] = ..., image_query_space: _Optional[str] = ..., text_query_space: _Optional[str] = ..., unindexed_products: _Optional[int] = ...) -> None: ...

class ShardStats(_message.Message):
    __slots__ = ("name", "answered_by", "products", "applied_seq", "last_snapshot_seq", "stale_replicas", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SNAPSHOT_SEQ_FIELD_NUMBER: _ClassVar[int]
    STALE_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    answered_by: str
    products: int
    applied_seq: int
    last_snapshot_seq: int
    stale_replicas: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, name: _Optional[str] = ..., answered_by: _Optional[str] = ..., products: _Optional[int] = ..., applied_seq: _Optional[int] = ..., last_snapshot_seq: _Optional[int] = ..., stale_replicas: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...
