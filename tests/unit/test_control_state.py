"""$SHOAL_HOME: atomic writes, layout, config parsing."""

from __future__ import annotations

import os
import stat

import pytest

from shoal.control import state
from shoal.control.config import ControlConfig, parse_addr
from shoal.control.errors import InvalidRequest, StateError
from shoal.control.state import Home, atomic_write, read_json, write_json


def test_atomic_write_replaces_whole_file_with_mode(tmp_path):
    path = tmp_path / "a" / "file.json"
    write_json(path, {"v": 1})
    write_json(path, {"v": 2})
    assert read_json(path) == {"v": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    atomic_write(path, b"x", 0o644)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.json"]


def test_a_failed_write_leaves_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "registry.json"
    write_json(path, {"v": 1})

    def crash(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state.os, "replace", crash)
    with pytest.raises(StateError, match="no space|No space"):
        write_json(path, {"v": 2})
    assert read_json(path) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json"]


def test_a_write_interrupted_before_rename_is_invisible(tmp_path, monkeypatch):
    path = tmp_path / "registry.json"
    write_json(path, {"v": 1})
    real_fsync = os.fsync
    calls = []

    def fsync_then_die(fd):
        real_fsync(fd)
        calls.append(fd)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(state.os, "fsync", fsync_then_die)
    with pytest.raises(StateError):
        write_json(path, {"v": 2, "big": "x" * 100000})
    assert calls and read_json(path) == {"v": 1}


def test_read_json_errors_are_state_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StateError, match="bad.json"):
        read_json(tmp_path / "bad.json")
    assert read_json(tmp_path / "missing.json", 7) == 7


def test_home_layout_and_token(tmp_path):
    home = Home(tmp_path / "home").ensure()
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700
    assert {p.name for p in home.root.iterdir()} == {"identity", "supervisors", "logs"}
    token = home.token()
    assert len(token) >= 32 and home.token() == token
    assert stat.S_IMODE(home.token_file.stat().st_mode) == 0o600
    assert home.pod_log("ns", "pod-1", "app") == home.root / "logs" / "ns" / "pod-1.app.log"


def test_config_parse():
    cfg = ControlConfig.parse({"home": "/tmp/x", "api": "127.0.0.1:0", "cert_lifetime": "60"})
    assert cfg.api == ("127.0.0.1", 0) and cfg.cert_lifetime == 60.0
    assert ControlConfig.parse({"home": "/tmp/x"}).api == ("127.0.0.1", 50750)
    assert parse_addr("[::1]:80") == ("::1", 80)
    for bad in ({"home": ""}, {"home": "/x", "api": "nope"}, {"home": "/x", "api": "h:70000"},
                {"home": "/x", "cert_lifetime": "-1"}, {"home": "/x", "max_body": "big"}):
        with pytest.raises(InvalidRequest):
            ControlConfig.parse(bad)


def test_pod_logs_rotate_by_copy_truncate(tmp_path):
    """A child keeps writing (O_APPEND) to the same file after the rotation."""
    import os

    from shoal.control.process import rotate_log

    log = tmp_path / "proxy.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, b"x" * 2000)
    assert rotate_log(log, max_bytes=5000) is False
    os.write(fd, b"y" * 4000)
    assert rotate_log(log, max_bytes=5000) is True
    assert (tmp_path / "proxy.log.1").read_bytes() == b"x" * 2000 + b"y" * 4000
    os.write(fd, b"after\n")
    os.close(fd)
    assert log.read_bytes() == b"after\n"
    assert rotate_log(tmp_path / "missing.log") is False
