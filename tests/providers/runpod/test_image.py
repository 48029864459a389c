"""The image pull as the pod's log tells it, in each runtime's words, bounded by the log's order
whatever the stamps' resolution, and tags that can move."""

import datetime as dt

import pytest

from tasks.providers.runpod.image import parse_line, pin_note, pull_from_log

DOCKER_COLD = """2026-12-04T10:00:00Z [system] Pulling image unsloth/unsloth:latest
2026-12-04T10:00:01Z [system] a3ed95caeb02: Pulling fs layer
2026-12-04T10:02:40Z [system] a3ed95caeb02: Pull complete
2026-12-04T10:02:44Z [system] Digest: sha256:abababababababababababababababababababababababababababababababab
2026-12-04T10:02:44Z [system] Status: Downloaded newer image for unsloth/unsloth:latest
2026-12-04T10:02:45Z [system] start container for unsloth/unsloth:latest: begin
2026-12-04T10:02:50Z [container] sshd started"""

CACHED = """2026-12-04T10:00:00Z [system] Pulling image unsloth/unsloth:latest
2026-12-04T10:00:00Z [system] Status: Image is up to date for unsloth/unsloth:latest
2026-12-04T10:00:01Z [system] start container for unsloth/unsloth:latest: begin"""

CONTAINERD = """2026-12-04T10:00:00Z [system] image pull: docker.example/unsloth/unsloth:core
2026-12-04T10:00:33Z [system] successfully pulled image in 33s
2026-12-04T10:00:34Z [container] starting"""


@pytest.mark.parametrize("text, seconds, cached", [(DOCKER_COLD, 164.0, False), (CACHED, 0.0, True),
                                                   (CONTAINERD, 33.0, False)])
def test_a_pull_is_timed_from_its_first_line_to_its_last_before_the_container(text, seconds, cached):
    found = pull_from_log(text)
    found.pop("digest", None)
    assert found == {"seconds": seconds, "cached": cached, "from": "pod log", "resolution_s": 1.0}


# A 40.25 s pull as RunPod's hosts write it, in two orders: the container created (in the pull's first
# second) before "Pulling from", or after the pull; then started. Offsets in seconds after 12:02:03.
CREATE_FIRST = [(0.0, "create container unsloth/unsloth:latest"), (0.1, "latest: Pulling from unsloth/unsloth"),
                (0.2, "a3ed95caeb02: Pulling fs layer"), (0.2, "b4f1c2d3e4f5: Pulling fs layer"),
                (12.5, "a3ed95caeb02: Downloading"), (30.0, "a3ed95caeb02: Download complete"),
                (31.0, "a3ed95caeb02: Extracting"), (36.0, "a3ed95caeb02: Pull complete"),
                (38.0, "b4f1c2d3e4f5: Pull complete"),
                (40.35, "Digest: sha256:" + "cd" * 32),
                (40.35, "Status: Downloaded newer image for unsloth/unsloth:latest"),
                (40.35, "start container unsloth/unsloth:latest"), (41.0, "container started")]
PULL_FIRST = [line for line in CREATE_FIRST if not line[1].startswith("create")]
PULL_FIRST.insert(-2, (40.35, "create container unsloth/unsloth:latest"))


def _log(events, digits: int | None, start: str = "2026-12-04T12:02:03") -> str:
    """The log as the REST client writes it, stamps cut to whole seconds, milli- or nanoseconds."""
    base = dt.datetime.fromisoformat(start)
    lines = []
    for offset, text in events:
        at = base + dt.timedelta(seconds=offset)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S")
        if digits:
            stamp += "." + f"{at.microsecond:06d}{0:03d}"[:digits]
        lines.append(f"{stamp}Z [system] {text}")
    return "\n".join(lines + [f"{base.strftime('%Y-%m-%dT%H:%M:%S')}Z [container] Downloading 1 of 3 files"])


@pytest.mark.parametrize("order", [CREATE_FIRST, PULL_FIRST], ids=["create-before-pull", "pull-before-create"])
@pytest.mark.parametrize("digits, resolution", [(None, 1.0), (3, 0.001), (9, 1e-9)],
                         ids=["seconds", "milliseconds", "nanoseconds"])
def test_the_pull_is_bounded_by_the_logs_order_in_every_resolution(order, digits, resolution):
    """Whole seconds, milliseconds and nanoseconds give the same phase within the stamps' resolution,
    which the record states; a container created in the pull's first second does not end it."""
    found = pull_from_log(_log(order, digits))
    assert found["resolution_s"] == pytest.approx(resolution) and found["cached"] is False
    assert found["seconds"] == pytest.approx(40.25, abs=resolution + 1e-6), found
    assert found["digest"] == "sha256:" + "cd" * 32


def test_a_cached_image_with_no_pull_and_a_pull_still_running():
    started = pull_from_log(_log([(0.0, "create container x:1.0"), (0.5, "start container x:1.0")], 3))
    assert started["seconds"] == 0.0 and started["cached"] is True  # the host had it: nothing pulled
    running = pull_from_log(_log(CREATE_FIRST[:7], None))
    assert running["seconds"] is None and "had not finished" in running["why"]
    assert running["started_at"].startswith("2026-12-04T12:02:03")


def test_stamps_of_any_precision_parse():
    nano = parse_line("2026-06-01T12:02:03.123456789Z [system] Pulling from x")
    assert nano.at.microsecond == 123456 and nano.resolution == pytest.approx(1e-9) and nano.source == "system"
    assert parse_line("2026-06-01T12:02:03+02:00 [container] hi").at.utcoffset() == dt.timedelta(hours=2)
    assert parse_line("no stamp at all") is None


def test_the_digest_the_runtime_printed_is_kept_and_offered_as_the_pin():
    digest = "sha256:" + "ab" * 32
    assert pull_from_log(DOCKER_COLD)["digest"] == digest
    assert "digest" not in pull_from_log(CONTAINERD)  # it printed none: nothing is made up
    note = pin_note("unsloth/unsloth:latest", digest)
    assert f"unsloth/unsloth@{digest} (the image this run ran)" in note and "YYYY" not in note


def test_a_log_without_a_pull_says_so_instead_of_guessing():
    assert pull_from_log(None)["seconds"] is None
    said = pull_from_log("2026-12-04T10:00:00Z [container] hello\nno stamp here")
    assert said["seconds"] is None and "names no image pull" in said["why"]
    unfinished = pull_from_log("2026-12-04T10:00:00Z [system] Pulling image x:1.0\n"
                               "2026-12-04T10:00:09Z [system] abc: Pulling fs layer")
    assert unfinished["seconds"] is None and "had not finished" in unfinished["why"]


@pytest.mark.parametrize("image", ["unsloth/unsloth:nightly-2026.11.30", "unsloth/unsloth:2026.12.1",
                                   "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
                                   "unsloth/unsloth@sha256:" + "a" * 64, None])
def test_dated_versioned_and_digest_images_do_not_move(image):
    assert pin_note(image) is None


@pytest.mark.parametrize("image, repo", [("unsloth/unsloth:latest", "unsloth/unsloth"),
                                         ("unsloth/unsloth", "unsloth/unsloth"),
                                         ("unsloth/unsloth:core", "unsloth/unsloth"),
                                         ("registry.local:5000/team/img", "registry.local:5000/team/img")])
def test_a_floating_tag_is_named_with_how_to_pin_it(image, repo):
    note = pin_note(image)
    assert note and image in note and f"{repo}:nightly-YYYY.MM.DD" in note and "[runpod] image_name" in note
