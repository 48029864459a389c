"""`doit volume`: where, how large, what it costs against what it saves; created once, only when asked;
and a pod on it rents Secure Cloud in its data center and finds the model already there."""

from __future__ import annotations

import json

import pytest

from tasks.core.errors import ProviderError
from tasks.pipeline.volume import monthly_usd, pick_data_center, saved_minutes, size_gb
from tests.doubles.hub import HubDouble

GPUS = ("NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000")


def _dc(name, volumes=("STANDARD",), **levels):
    names = {"r5090": GPUS[0], "r4090": GPUS[1], "a6000": GPUS[2]}
    return {"id": name, "networkVolumeTypes": list(volumes),
            "gpuAvailability": [{"id": names[k], "availability": v} for k, v in levels.items()]}


def test_the_data_center_is_where_the_first_gpu_is_most_available_among_those_with_volumes():
    centers = [_dc("EU-RO-1", r5090="LOW", r4090="HIGH", a6000="HIGH"), _dc("US-KS-2", r5090="HIGH"),
               _dc("US-TX-3", volumes=(), r5090="HIGH", r4090="HIGH"), _dc("CA-MTL-1", r5090="HIGH", a6000="LOW")]
    assert pick_data_center(centers, GPUS) == ("CA-MTL-1", f"{GPUS[0]} availability HIGH there")  # fallbacks break the tie
    with pytest.raises(ProviderError, match="no data center .* offers network volumes"):
        pick_data_center([_dc("US-TX-3", volumes=(), r5090="HIGH")], GPUS)


def test_the_size_holds_the_build_and_the_stack_and_the_price_follows_it():
    assert size_gb(17.47) == 36 and monthly_usd(36) == 2.52  # Qwen3-30B-A3B's 4-bit build
    assert size_gb(61.06) == 88 and monthly_usd(88) == 6.16  # its bf16 weights
    assert size_gb(0.1) == 15 and size_gb(5000) == 4096 and monthly_usd(2000) == 100.0


def test_what_a_volume_saves_is_the_download_less_the_slower_read():
    assert round(saved_minutes(17.47, 100), 2) == 1.83  # 2.91 min of download, 1.08 min more to read it
    assert saved_minutes(61.06, 1000) < 0  # a fast link: the volume costs time


@pytest.fixture
def hub():
    with HubDouble() as double:
        yield double


def test_doit_volume_plans_then_creates_once(tmp_path, fake_api, hub):
    from tests.conftest import runpod_project

    fake_api.dc_availability = {"US-TEST-1": {GPUS[0]: "MEDIUM"}, "US-KS-2": {GPUS[0]: "HIGH"}}
    fake_api.no_volume_dcs = {"EU-RO-1"}
    proj = runpod_project(tmp_path, None, fake_api, training={"base_model": "Qwen/Qwen3-30B-A3B"})
    proj.env["HF_ENDPOINT"] = hub.url
    planned = proj.doit("volume", check=True)
    assert "network volume 'fullcycle-models': 88 GB in US-KS-2" in planned.stdout  # the bf16 weights, ~61 GB
    assert "costs $6.16/month" in planned.stdout and "doit volume --create" in planned.stdout
    assert "the base model's download: 6.4 min (61.1 GB at 100 MB/s" in planned.stdout
    assert "the compile caches: 1.2 min" in planned.stdout
    assert "the Python stack's build: 0.0 min (not measured yet" in planned.stdout
    assert fake_api.ops("create_volume") == 0
    created = proj.doit("volume", "--create", check=True)
    assert fake_api.ops("create_volume") == 1
    body = json.loads(next(detail for op, detail in fake_api.calls if op == "create_volume"))
    assert body == {"name": "fullcycle-models", "size": 88, "dataCenter": "US-KS-2", "type": "STANDARD"}
    volume_id = next(v for v in fake_api.volume_details)
    assert f'network_volume_id = "{volume_id}"' in created.stdout
    again = proj.doit("volume", "--create", check=True)
    assert fake_api.ops("create_volume") == 1 and "exists already" in again.stdout
    assert fake_api.ops("create") == 0  # no pod was rented to plan or make it
    record = json.loads((proj.root / ".fullcycle" / "volume.json").read_text())
    assert record["volume"]["id"] == volume_id and record["plan"]["saved_minutes_per_run"] == 7.6
    assert [s["what"] for s in record["plan"]["savings"]] == ["the base model's download", "the Python stack's build",
                                                              "the compile caches"]


def test_doit_volume_creates_one_for_the_tiny_base_when_asked_and_says_it_does_not_pay(tmp_path, fake_api):
    """A model that travels with the inputs downloads nothing, but a volume still keeps the stack and
    the compile caches: the plan says each figure, and --create makes it as asked, saying it does not pay."""
    from tests.conftest import runpod_project

    proj = runpod_project(tmp_path, None, fake_api)
    proc = proj.doit("volume", "--create", check=True)
    assert "tiny travels with the inputs: nothing is downloaded" in proc.stdout
    assert "creating it as asked, although it does not pay: $1.05/month" in proc.stdout
    assert fake_api.ops("create_volume") == 1 and "network_volume_id = " in proc.stdout
    body = json.loads(next(detail for op, detail in fake_api.calls if op == "create_volume"))
    assert body["size"] == 15  # the stack and the caches, with headroom


def test_the_stack_a_volume_saves_is_the_build_the_last_pod_measured(tmp_path, fake_api, monkeypatch):
    from tasks.context import RunContext
    from tasks.core.paths import remember_run
    from tasks.pipeline.volume import _stack
    from tests.conftest import runpod_project

    proj = runpod_project(tmp_path, None, fake_api)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    for date, seconds, source in (("2026-11-25", 84.0, "bootstrapped from requirements-gpu.txt"),
                                  ("2026-11-26", 1.0, "venv built earlier")):
        ctx = RunContext.load(date=date)
        ctx.paths.work_local.mkdir(parents=True, exist_ok=True)
        remember_run(ctx.paths)
        ctx.paths.summary_file.write_text(json.dumps({"date": date, "provider": "runpod",
                                                      "phases": {"python_stack": seconds},
                                                      "training": {"python_source": source}}))
    found = _stack(ctx)
    assert found.minutes == 0.0 and "venv built earlier" in found.how  # the latest run: nothing was built
    ctx.paths.summary_file.unlink()
    found = _stack(ctx)
    assert found.minutes == 1.4 and "84 s on 2026-11-25's pod" in found.how


def test_doit_volume_create_waits_out_rate_limits_and_outages_as_every_call_does(tmp_path, fake_api):
    """RunPod rate-limits its REST API: a 429 from the catalogue and a 503 on the create are waited out
    (Retry-After honoured), and the volume is made once."""
    from tests.conftest import runpod_project

    fake_api.faults.http_errors = {"catalog": [429], "datacenters": [429, 503], "create_volume": [503]}
    fake_api.faults.retry_after = 0
    proj = runpod_project(tmp_path, None, fake_api)
    proc = proj.doit("volume", "--create", check=True)
    assert fake_api.ops("create_volume") == 1 and len(fake_api.volume_details) == 1
    assert "network_volume_id = " in proc.stdout and "HTTP 429" in proc.stdout + proc.stderr
