"""RunPod as it is now: REST v2 by default, the GPU chosen from the catalogue, the cost RunPod
billed, the pod's own log, GraphQL's retirement. Against the fake API (no ssh needed here)."""

from __future__ import annotations

import pytest

from tasks.core.settings import RunpodSettings
from tasks.providers.runpod import choice
from tasks.providers.runpod.client import ApiError
from tasks.providers.runpod.graphql import GraphqlApi
from tasks.providers.runpod.rest import RestApi
from tests.conftest import API_KEY
from tests.doubles.fake_runpod import FakeRunpod

GPUS = ["NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"]
CLOUDS = ("COMMUNITY", "SECURE")


@pytest.fixture
def api():
    with FakeRunpod(API_KEY, 22) as fake:
        yield fake


def _rest(fake: FakeRunpod) -> RestApi:
    return RestApi(API_KEY, url=fake.url, retry_base_s=0.01)  # a 500 is retried as every call is: quickly here


def test_rest_is_the_default_api():
    assert RunpodSettings().api == "rest"


def test_the_users_order_among_the_available(api):
    api.faults.unavailable = {("NVIDIA GeForce RTX 5090", "*")}
    picked = choice.choose(_rest(api), GPUS, CLOUDS, 1, "order")
    tried = [(c.gpu, c.cloud) for c in picked.to_try()]
    assert tried[0] == ("NVIDIA GeForce RTX 4090", "COMMUNITY")
    skipped = {(c.gpu, c.cloud): c.verdict for c in picked.candidates if c.verdict.startswith("skipped")}
    assert skipped == {("NVIDIA GeForce RTX 5090", "COMMUNITY"): "skipped: none available now",
                       ("NVIDIA GeForce RTX 5090", "SECURE"): "skipped: none available now"}
    row = picked.record()["candidates"][0]
    assert row == {"gpu": "NVIDIA GeForce RTX 5090", "cloud": "COMMUNITY", "price_per_hr": 0.69, "memory_gb": 32,
                   "availability": "NONE", "verdict": "skipped: none available now"}


def test_cheapest_first_and_the_model_must_fit(api):
    picked = choice.choose(_rest(api), GPUS, CLOUDS, 2, "cheapest", needed_gb=30)
    order = [(c.gpu, c.cloud, c.price_per_hr) for c in picked.to_try()]
    assert order[0] == ("NVIDIA RTX A6000", "COMMUNITY", 0.66)  # 2 GPUs: the price is for both
    assert [p for _, _, p in order] == sorted(p for _, _, p in order)
    small = [c for c in picked.candidates if c.gpu == "NVIDIA GeForce RTX 4090"]
    assert all(c.verdict == "skipped: the model needs ~30 GB, it has 24 GB" for c in small)
    picked.rented(picked.to_try()[0])
    assert picked.record()["why"] == "the cheapest available at $0.66/h"


def test_a_network_volume_means_availability_in_its_data_center(api):
    picked = choice.choose(_rest(api), GPUS, ("SECURE",), 1, "order", data_center="EU-RO-1")
    assert [c.availability for c in picked.candidates] == ["HIGH", "HIGH", "HIGH"]
    api.gpus.pop("NVIDIA GeForce RTX 5090")  # not offered at all any more
    picked = choice.choose(_rest(api), GPUS, ("SECURE",), 1, "order", data_center="EU-RO-1")
    assert picked.candidates[0].verdict.startswith("skipped: not in RunPod's catalogue")


@pytest.mark.parametrize("fault", ["404", "500", "malformed"])
def test_an_unreadable_catalogue_falls_back_to_trying_in_order(api, fault):
    api.faults.catalog = fault
    picked = choice.choose(_rest(api), GPUS, CLOUDS, 1, "cheapest")
    assert [(c.gpu, c.cloud) for c in picked.to_try()] == [(g, c) for g in GPUS for c in CLOUDS]
    assert picked.order == "your order" and picked.catalogue != "read"
    picked.rented(picked.to_try()[0])
    assert "catalogue not used" in picked.record()["why"]


def test_graphql_has_no_catalogue_and_says_so(api):
    picked = choice.choose(GraphqlApi(API_KEY, url=api.url + "/graphql", retry_base_s=0.01), GPUS, CLOUDS, 1, "order")
    assert picked.catalogue == "this API has no catalogue" and len(picked.to_try()) == 6


def test_graphql_retired_is_one_line_naming_the_fix(api):
    api.faults.graphql_gone = True
    with pytest.raises(ApiError) as err:
        GraphqlApi(API_KEY, url=api.url + "/graphql").check_key()
    message = str(err.value)
    assert "retired" in message and '[runpod] api = "rest"' in message and "nothing was rented" in message
    assert "\n" not in message


def test_billing_lags_then_shows_the_cost(api):
    rest = _rest(api)
    pod = api._create("NVIDIA GeForce RTX 5090", "COMMUNITY", "fullcycle-x", {})
    api._terminate(pod.id)
    api.faults.billing_lag = 2
    assert rest.billed(pod.id, "2026-01-01T00:00:00Z") is None
    assert rest.billed(pod.id, "2026-01-01T00:00:00Z") is None
    cost = rest.billed(pod.id, "2026-01-01T00:00:00Z")
    assert cost is not None and cost > 0


def test_the_pods_own_log_is_read_bounded(api):
    pod = api._create("NVIDIA GeForce RTX 5090", "COMMUNITY", "fullcycle-x", {})
    text = _rest(api).logs(pod.id)
    assert "Pulling image runpod/pytorch:fake" in text and "[container]" in text
    api.faults.logs = "500"
    assert _rest(api).logs(pod.id) is None
