"""RunPod's answers mapped to what the caller does next (tasks/providers/runpod/client.py, rest.py, graphql.py)."""

from __future__ import annotations

import json

import pytest

from tasks.core.errors import NoCapacityError
from tasks.providers.runpod.client import (
    ApiError,
    Http,
    RetryableApiError,
    SkipCandidate,
    Unanswered,
    with_retries,
)
from tasks.providers.runpod.graphql import GraphqlApi
from tasks.providers.runpod.rest import RestApi


def test_api_retries_turn_into_an_unknown_answer_that_names_the_call():
    def busy():
        raise RetryableApiError("HTTP 429", retry_after=0)

    with pytest.raises(Unanswered, match="create pod: still failing after 2"):
        with_retries(busy, "create pod", attempts=2, sleep=lambda s: None)


class FakeResponse:
    def __init__(self, status: int, body: object) -> None:
        self.status_code, self._body, self.headers = status, body, {}
        self.text = json.dumps(body)

    def json(self):
        return self._body


def _api(kind, status, body):
    api = GraphqlApi("k", "http://127.0.0.1:9/graphql") if kind == "graphql" else RestApi("k", "http://127.0.0.1:9")
    api.http.session.request = lambda *a, **kw: FakeResponse(status, body)
    api.http.retry_base_s = 0
    return api


def test_every_call_goes_through_one_retry_that_waits_out_429_and_5xx():
    answers = [FakeResponse(429, {}), FakeResponse(503, {}), FakeResponse(200, {"pods": []})]
    http = Http("k", retry_base_s=0)
    http.session.request = lambda *a, **kw: answers.pop(0)
    assert http.request("GET", "http://127.0.0.1:9/v2/pods").status_code == 200 and http.calls == 3
    http.session.request = lambda *a, **kw: FakeResponse(503, {})
    with pytest.raises(RetryableApiError):  # a create is sent once: its caller looks for what it made first
        http.request("POST", "http://127.0.0.1:9/v2/pods", once=True)


@pytest.mark.parametrize("configured, base", [
    (None, "https://api.runpod.io"), ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("https://api.runpod.io/v2/", "https://api.runpod.io"),
    ("https://rest.runpod.io/v1", "https://api.runpod.io"),  # runpodctl's setting names v1: never ".../v1/v2/pods"
])
def test_the_rest_base_never_appends_v2_to_a_versioned_url(configured, base):
    from tasks.providers.runpod.rest import rest_base

    assert rest_base(configured) == base


@pytest.mark.parametrize("message, error", [
    ("There are no longer any instances available with the requested specifications.", NoCapacityError),
    ("Something went wrong. Please try again later or contact support.", Unanswered),
    ('Cannot query field "x" on type "Pod"', ApiError),
])
def test_graphql_errors_map_to_what_the_caller_does_next(message, error):
    with pytest.raises(error):
        _api("graphql", 200, {"errors": [{"message": message}], "data": None}).get("p1")


def test_graphql_error_with_partial_data_is_not_ignored():
    api = _api("graphql", 200, {"errors": [{"message": "pod is locked"}], "data": {"podTerminate": None}})
    with pytest.raises(ApiError, match="pod is locked"):
        api.terminate("p1")


@pytest.mark.parametrize("status, error", [(400, NoCapacityError), (403, SkipCandidate), (422, ApiError)])
def test_rest_create_statuses(status, error):
    from tasks.providers.runpod.client import CreateRequest

    req = CreateRequest(name="n", gpu_type="g", cloud_type="COMMUNITY", gpu_count=1, template_id="t", image_name="",
                        min_vcpu_count=1, min_memory_gb=1, volume_gb=10, container_disk_gb=10)
    with pytest.raises(error):
        _api("rest", status, {"title": "t", "status": status, "detail": "d"}).create(req)
