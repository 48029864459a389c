"""Where a base model trains, decided before renting (tasks/model/plan.py): one GPU, N GPUs of one pod
sharded, else an Instant Cluster; within [runpod] max_gpus, else refused with the ways there are."""

from __future__ import annotations

import pytest

from tasks.model import plan
from tests.helpers import make_project

GPUS = ["NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"]


def test_the_memory_of_one_gpu_shrinks_with_the_shards_but_not_below_what_each_rank_keeps():
    shape, load = plan.KNOWN["meta-llama/Llama-3.3-70B-Instruct"], plan.Load()
    one, eight = plan.gb_per_gpu(shape, 1, load), plan.gb_per_gpu(shape, 8, load)
    assert 140 < one < 160  # ~141 GB of bf16 weights, and what training adds
    assert eight < one / 4 and eight > 141 / 8  # the weights are split, the activations and context are not


def test_one_pod_before_a_cluster_and_a_cluster_with_the_fewest_pods():
    load = plan.Load()
    dense = plan.shard("70B", plan.KNOWN["meta-llama/Llama-3.3-70B-Instruct"], GPUS, load, 8, "auto")
    assert (dense.chosen.pods, dense.chosen.gpus_per_pod, dense.chosen.gpu) == (1, 8, "NVIDIA GeForce RTX 5090")
    huge = plan.shard("235B", plan.KNOWN["Qwen/Qwen3-235B-A22B"], GPUS, load, 64, "auto")
    assert huge.chosen.pods == 2 and huge.chosen.gpu in plan.CLUSTER_GPUS  # no pod of 8 consumer cards holds ~470 GB
    assert all(option.pods >= 2 for option in huge.alternatives)
    record = huge.record()
    assert {"gpu", "gpus_per_pod", "pods", "gb_per_gpu", "price_per_hr", "why"} <= set(record)


def test_a_plan_beyond_max_gpus_is_refused_naming_the_ways_there_are():
    with pytest.raises(plan.PlanRefused) as err:
        plan.shard("235B", plan.KNOWN["Qwen/Qwen3-235B-A22B"], ["NVIDIA GeForce RTX 4090"], plan.Load(), 2, "auto")
    said = str(err.value)
    assert "within [runpod] max_gpus = 2" in said and "Instant Cluster of 2 pods" in said and "nothing was rented" in said


def test_4bit_weights_are_never_sharded():
    with pytest.raises(plan.PlanRefused, match="uint8 storage"):
        plan.shard("70B", plan.KNOWN["meta-llama/Llama-3.3-70B-Instruct"], GPUS, plan.Load(), 8, "always")


def test_doit_plan_prints_the_plans_people_move_to_without_the_network(tmp_path):
    """The README's command: a dense 70B and Qwen3-235B-A22B, from the shapes kept in the repository."""
    proj = make_project(tmp_path, runpod={"max_gpus": 16})
    proj.env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing answers there: no network is needed
    dense = proj.doit("plan", "--model", "meta-llama/Llama-3.3-70B-Instruct", check=True).stdout
    assert "~70.6B parameters" in dense and "plan: 8 x NVIDIA GeForce RTX 5090 on one pod" in dense and "$7.12/h" in dense
    huge = proj.doit("plan", "--model", "Qwen/Qwen3-235B-A22B", check=True).stdout
    assert "plan: an Instant Cluster of 2 pods x" in huge and "GB per GPU" in huge and "/h" in huge
    unknown = proj.doit("plan", "--model", "someone/unknown-model", check=True).stdout
    assert "no shape kept here" in unknown
