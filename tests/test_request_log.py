"""A call's line in the request log (service/request_log.py): the text that
json.dumps gives for its fields, whatever a client put in its request id or
a status message holds."""

import json
import logging

import pytest

from lookalike.service.request_log import RequestLog, line

CALLS = [
    ("0123456789abcdef" * 2, "Search", "OK", 0.000512, "ipv4:127.0.0.1:45678", None),
    ('quote " backslash \\ newline \n tab \t', "Get", "NOT_FOUND", 1.5, "ipv6:[::1]:5", "no product 7"),
    ("\u00e9\u2028\U0001f600\x00", "Upsert", "INVALID_ARGUMENT", 12345.678912, "unix:/tmp/a b", 'bad "x" \u00ff'),
    ("", "Delete", "OK", 1e-9, "", ""),
]


def as_json_dumps(request_id, method, code, seconds, peer, error):
    fields = {"request_id": request_id, "method": method, "code": code, "ms": round(seconds * 1e3, 3), "peer": peer}
    if error is not None:
        fields["error"] = error
    return json.dumps(fields)


@pytest.mark.parametrize("call", CALLS)
def test_a_line_is_what_json_dumps_writes(call):
    assert line(*call) == as_json_dumps(*call)
    assert json.loads(line(*call))["request_id"] == call[0]


def test_the_writer_logs_each_queued_call(caplog):
    caplog.set_level(logging.INFO, logger="lookalike.requests")
    requests = RequestLog()
    for call in CALLS:
        requests.add(*call)
    requests.close()
    written = [r.getMessage() for r in caplog.records if r.name == "lookalike.requests"]
    assert written == [as_json_dumps(*call) for call in CALLS]
