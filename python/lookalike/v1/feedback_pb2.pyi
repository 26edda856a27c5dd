from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_IMPRESSION: _ClassVar[EventKind]
    EVENT_KIND_CLICK: _ClassVar[EventKind]
    EVENT_KIND_ADD_TO_CART: _ClassVar[EventKind]
    EVENT_KIND_PURCHASE: _ClassVar[EventKind]
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_IMPRESSION: EventKind
EVENT_KIND_CLICK: EventKind
EVENT_KIND_ADD_TO_CART: EventKind
EVENT_KIND_PURCHASE: EventKind

class FeedbackEvent(_message.Message):
    __slots__ = ("search_id", "product_id", "position", "kind", "time_ms")
    SEARCH_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    search_id: str
    product_id: int
    position: int
    kind: EventKind
    time_ms: int
    def __init__(self, search_id: _Optional[str] = ..., product_id: _Optional[int] = ..., position: _Optional[int] = ..., kind: _Optional[_Union[EventKind, str]] = ..., time_ms: _Optional[int] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FeedbackEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FeedbackEvent, _Mapping]]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...

class FeedbackStatsRequest(_message.Message):
    __slots__ = ("since_ms", "until_ms")
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    since_ms: int
    until_ms: int
    def __init__(self, since_ms: _Optional[int] = ..., until_ms: _Optional[int] = ...) -> None: ...

class FeedbackStatsResponse(_message.Message):
    __slots__ = ("searches", "impressions", "clicks", "add_to_carts", "purchases", "searches_with_click", "click_through_rate", "add_to_cart_rate", "purchase_through_rate", "abandonment_rate", "events_kept")
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    IMPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLICKS_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_CARTS_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_FIELD_NUMBER: _ClassVar[int]
    SEARCHES_WITH_CLICK_FIELD_NUMBER: _ClassVar[int]
    CLICK_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_CART_RATE_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_THROUGH_RATE_FIELD_NUMBER: _ClassVar[int]
    ABANDONMENT_RATE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    searches: int
    impressions: int
    clicks: int
    add_to_carts: int
    purchases: int
    searches_with_click: int
    click_through_rate: float
    add_to_cart_rate: float
    purchase_through_rate: float
    abandonment_rate: float
    events_kept: int
    def __init__(self, searches: _Optional[int] = ..., impressions: _Optional[int] = ..., clicks: _Optional[int] = ..., add_to_carts: _Optional[int] = ..., purchases: _Optional[int] = ..., searches_with_click: _Optional[int] = ..., click_through_rate: _Optional[float] = ..., add_to_cart_rate: _Optional[float] = ..., purchase_through_rate: _Optional[float] = ..., abandonment_rate: _Optional[float] = ..., events_kept: _Optional[int] = ...) -> None: ...
