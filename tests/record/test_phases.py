"""Billed seconds by phase: each from where it was measured, `other` the rest, nothing guessed."""

from tasks.record.phases import ORDER, model_download, not_training_share, phases, preflight_cost

POD = {"created_at": "2026-12-04T10:00:00+00:00", "running_at": "2026-12-04T10:01:00+00:00",
       "ready_at": "2026-12-04T10:01:20+00:00", "image_pull": {"seconds": 42.0, "from": "pod log"},
       "terminate_requested_at": "2026-12-04T10:20:00+00:00", "terminated_at": "2026-12-04T10:20:03+00:00"}
TRAIN = {"setup_seconds": 0, "preflight": {"ok": True, "seconds": 21.5},
         "download": {"ok": True, "bytes": 17_000_000_000, "seconds": 80.0, "mb_s": 212.5, "tries": 1}}
METRICS = {"phases": {"trainer_start": 9.0, "model_load": 60.0, "data_prep": 3.0, "training": 840.0,
                      "evaluation": 30.0, "save": 4.0}}
STAGES = {"upload": {"status": "ok", "seconds": 2.31}, "download_adapter": {"status": "ok", "seconds": 1.2},
          "train": {"status": "ok", "seconds": 1010.0}}


def test_each_phase_comes_from_where_it_was_measured_and_other_is_the_rest():
    found = phases(POD, TRAIN, METRICS, STAGES, billed=1203.0)
    assert list(found) == list(ORDER)
    assert found["create_to_running"] == 18.0 and found["image_pull"] == 42.0  # the pull is taken out of the start
    assert found["ssh_reachable"] == 20.0 and found["upload"] == 2.31 and found["python_stack"] == 0.0
    assert found["preflight"] == 21.5 and found["model_download"] == 80.0 and found["training"] == 840.0
    assert found["adapter_transfer"] == 1.2 and found["terminate_to_billed"] == 3.0
    assert found["other"] == round(1203.0 - sum(v for k, v in found.items() if k != "other"), 1)
    assert not_training_share(found, 1203.0) == round(363 / 1203, 3)


def test_what_was_not_measured_is_none_never_a_guess():
    found = phases({"created_at": "2026-12-04T10:00:00+00:00"}, {}, {}, {"upload": {"status": "failed", "seconds": 9}},
                   billed=None)
    assert found["create_to_running"] is None and found["upload"] is None and found["other"] is None
    assert not_training_share(found, None) is None and not_training_share(found, 100.0) is None


def test_hand_edited_records_are_read_as_missing():
    pod = dict(POD, image_pull="fast", running_at=12, ready_at="yesterday")
    found = phases(pod, {"setup_seconds": "1", "download": ["x"]}, {"phases": {"training": True}}, {"upload": 3}, 60.0)
    assert found["image_pull"] is None and found["ssh_reachable"] is None and found["training"] is None
    assert found["python_stack"] is None and found["model_download"] is None and found["upload"] is None


def test_the_download_keeps_what_the_pod_measured():
    assert model_download(TRAIN) == {"ok": True, "bytes": 17_000_000_000, "seconds": 80.0, "mb_s": 212.5, "tries": 1}
    assert model_download({}) is None


def test_what_ran_beside_the_download_counts_only_beyond_it_and_the_phases_still_add_up():
    """One process a day (the preflight inside the trainer): the trainer's start and its preflight ran
    during the download, so the download counts whole and they only for what went past its end."""
    t0 = 1_000_000.0
    train = {"setup_seconds": 0, "preflight": {"ok": True, "seconds": 140.0, "started_at": t0, "ended_at": t0 + 140},
             "download": {"ok": True, "seconds": 299.0, "started_at": t0, "ended_at": t0 + 300}}
    metrics = {"started_at": t0, "phases": {"trainer_start": 30.0, "preflight": 110.0, "download_wait": 160.0,
                                            "model_load": 60.0, "data_prep": 3.0, "training": 840.0,
                                            "evaluation": 30.0, "save": 4.0}}
    found = phases(POD, train, metrics, STAGES, billed=1500.0)
    assert found["model_download"] == 300.0 and found["preflight"] == 0.0 and found["trainer_start"] == 0.0
    assert found["model_load"] == 60.0 and found["training"] == 840.0  # after the download: whole
    assert "download_wait" not in found  # the download's own seconds, counted once
    # a short download (a 4-bit build, a fast link): the preflight's last 40 s are billed beyond it
    quick = dict(train, download={"ok": True, "started_at": t0, "ended_at": t0 + 100})
    later = dict(metrics, phases=dict(metrics["phases"], download_wait=0.0))
    found = phases(POD, quick, later, STAGES, billed=1500.0)
    assert found["model_download"] == 100.0 and found["preflight"] == 40.0 and found["trainer_start"] == 0.0
    # a preflight as a process apart (a trainer of one's own): its report's interval, the trainer after
    apart = dict(quick, preflight={"ok": True, "seconds": 140.0, "started_at": t0 + 1, "ended_at": t0 + 141})
    found = phases(POD, apart, METRICS, STAGES, billed=1500.0)
    assert found["preflight"] == 41.0 and found["trainer_start"] == 9.0
    assert preflight_cost(apart, METRICS) == {"seconds": 140.0, "billed_beyond_download": 41.0}
    assert preflight_cost({"preflight": {"ok": None, "skipped": "never"}}, {}) is None
