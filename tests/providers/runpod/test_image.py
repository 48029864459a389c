"""The image pull as the pod's log tells it, in each runtime's words, and tags that can move."""

import pytest

from tasks.providers.runpod.image import pin_note, pull_from_log

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


@pytest.mark.parametrize("text, seconds, cached", [(DOCKER_COLD, 165.0, False), (CACHED, 1.0, True),
                                                   (CONTAINERD, 33.0, False)])
def test_a_pull_is_timed_from_its_first_line_to_the_container_start(text, seconds, cached):
    found = pull_from_log(text)
    found.pop("digest", None)
    assert found == {"seconds": seconds, "cached": cached, "from": "pod log"}


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
