"""connection.json (tasks/providers/runpod/connection_file.py): whatever a person drops there is either
a connection ssh can use as it is, or one error that names the file and the field; never a traceback,
never a value ssh would read as an option."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.providers.runpod.connection_file import HOST, USER, ConnectionFileError, read_connection_file


def _key(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("key\n")
    return str(key)


@pytest.mark.parametrize(("content", "said"), [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[1, 2]", "holds a JSON list"),
    (b"{}", "empty object"),
    (b'{"ssh_user": "-oProxyCommand=touch /tmp/x", "ssh_host": "h", "ssh_key_path": "KEY"}', "'ssh_user'"),
    (b'{"ssh_user": "root", "ssh_host": "h -p 2", "ssh_key_path": "KEY"}', "'ssh_host'"),
    (b'{"ssh_user": "root", "ssh_host": "h", "ssh_key_path": "KEY", "ssh_port": true}', "'ssh_port'"),
    (b'{"ssh_user": "root", "ssh_host": "h", "ssh_key_path": "KEY", "connection_mode": ["pty"]}', "connection_mode"),
    (b'{"ssh_user": "root", "ssh_host": "h", "ssh_key_path": "~nobody-at-all/key"}', "ssh_key_path"),
    (b'{"ssh_user": "root", "ssh_host": "h", "ssh_key_path": "/a\\u0000b"}', "ssh_key_path"),
])
def test_what_ssh_must_never_see_is_named(tmp_path, content, said):
    path = tmp_path / "connection.json"
    path.write_bytes(content.replace(b"KEY", _key(tmp_path).encode()))
    with pytest.raises(ConnectionFileError, match="connection.json") as caught:
        read_connection_file(path)
    assert said in str(caught.value)


def test_a_folder_in_its_place_is_named(tmp_path):
    (tmp_path / "connection.json").mkdir()
    with pytest.raises(ConnectionFileError, match="Is a directory"):
        read_connection_file(tmp_path / "connection.json")


def test_the_seeds_file_reads_as_it_is(tmp_path):
    path = tmp_path / "connection.json"
    path.write_text(json.dumps({"ssh_user": "cgwbwsskymt5ep-64411bd9", "ssh_host": "ssh.runpod.io",
                                "ssh_key_path": _key(tmp_path)}))
    found = read_connection_file(path)
    assert found["ssh_user"] == "cgwbwsskymt5ep-64411bd9" and found["ssh_port"] == 22
    assert read_connection_file(tmp_path / "absent.json") is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.sampled_from(["ssh_user", "ssh_host", "ssh_key_path", "ssh_port", "connection_mode"]),
                              st.one_of(st.text(max_size=30), st.integers(), st.none(), st.booleans(),
                                        st.lists(st.integers(), max_size=2))))
def test_any_object_is_a_usable_connection_or_one_named_error(tmp_path_factory, fields):
    folder = tmp_path_factory.mktemp("conn")
    path = folder / "connection.json"
    path.write_text(json.dumps(fields))
    try:
        found = read_connection_file(path)
    except ConnectionFileError as exc:
        assert str(path) in str(exc)
        return
    assert USER.fullmatch(found["ssh_user"]) and HOST.fullmatch(found["ssh_host"])
    assert not found["ssh_user"].startswith("-") and not found["ssh_host"].startswith("-")
