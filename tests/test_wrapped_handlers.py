"""An interceptor's wrapped handler is made once per method, and made again when the
inner handler is another object (a refusal made for one call)."""

import grpc

from lookalike.service.wrapped_handlers import WrappedHandlers


def handler(reply):
    return grpc.unary_unary_rpc_method_handler(lambda request, context: reply)


def test_a_method_is_wrapped_once_while_its_inner_handler_stays_the_same():
    made = []

    def wrap(method, inner):
        made.append((method, inner))
        return grpc.unary_unary_rpc_method_handler(lambda request, context: ("wrapped", inner.unary_unary(request, context)))

    wrapped = WrappedHandlers(wrap)
    search, refusal = handler("hits"), handler("refused")
    first = wrapped.get("/lookalike.v1.SearchService/Search", search)
    assert wrapped.get("/lookalike.v1.SearchService/Search", search) is first
    assert first.unary_unary(None, None) == ("wrapped", "hits")
    # A refusal for one call is wrapped around the refusal, never served from the cache...
    assert wrapped.get("/lookalike.v1.SearchService/Search", refusal).unary_unary(None, None) == ("wrapped", "refused")
    # ...and the next ordinary call gets its own handler's wrapper again.
    assert wrapped.get("/lookalike.v1.SearchService/Search", search).unary_unary(None, None) == ("wrapped", "hits")
    other = wrapped.get("/lookalike.v1.SearchService/Upsert", search)
    assert other is not first
    assert [m for m, _ in made] == ["/lookalike.v1.SearchService/Search"] * 3 + ["/lookalike.v1.SearchService/Upsert"]
