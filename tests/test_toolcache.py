"""rdflow.toolcache: answers about a binary remembered on disk, per binary identity."""

from __future__ import annotations

import json
import os
import stat

import pytest

from rdflow import toolcache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RDFLOW_CACHE_DIR", str(tmp_path / "cache"))
    toolcache._MEMO.clear()
    yield tmp_path / "cache" / "tools.json"
    toolcache._MEMO.clear()


def _binary(path, text="#!/bin/sh\necho one\n"):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_an_answer_is_asked_once_per_binary_and_again_when_it_changes(tmp_path, cache):
    exe = _binary(tmp_path / "tool")
    calls = []

    def ask():
        calls.append(1)
        return ["a", "b"]

    assert toolcache.remembered(exe, "names", ask) == ["a", "b"]
    toolcache._MEMO.clear()  # a new process reads the file
    assert toolcache.remembered(exe, "names", ask) == ["a", "b"]
    assert len(calls) == 1
    doc = json.loads(cache.read_text())
    assert list(doc) == [toolcache.binary_key(exe)] and doc[toolcache.binary_key(exe)] == {
        "names": ["a", "b"]}
    _binary(tmp_path / "tool", "#!/bin/sh\necho a rebuilt binary\n")  # other size and mtime
    toolcache._MEMO.clear()
    assert toolcache.remembered(exe, "names", ask) == ["a", "b"]
    assert len(calls) == 2
    assert not list(cache.parent.glob(".tools.*"))  # replaced atomically, no leftovers


def test_a_failed_check_is_not_kept_and_a_broken_cache_is_ignored(tmp_path, cache):
    exe = _binary(tmp_path / "tool")
    answers = iter([False, True])
    assert toolcache.remembered(exe, "ok", lambda: next(answers), keep=bool) is False
    assert toolcache.remembered(exe, "ok", lambda: next(answers), keep=bool) is True
    cache.write_text("{not json")
    toolcache._MEMO.clear()
    assert toolcache.remembered(exe, "ok", lambda: "asked again") == "asked again"
    assert json.loads(cache.read_text())[toolcache.binary_key(exe)] == {"ok": "asked again"}


def test_a_missing_binary_is_never_cached_and_old_binaries_are_dropped(tmp_path, cache,
                                                                         monkeypatch):
    assert toolcache.remembered(str(tmp_path / "absent"), "x", lambda: 1) == 1
    assert not cache.exists()
    monkeypatch.setattr(toolcache, "MAX_BINARIES", 2)
    exes = [_binary(tmp_path / f"t{k}", f"#!/bin/sh\necho {k}\n") for k in range(3)]
    for k, exe in enumerate(exes):
        toolcache.remembered(exe, "k", lambda k=k: k)
    assert list(json.loads(cache.read_text())) == [toolcache.binary_key(e) for e in exes[1:]]


def test_an_unwritable_cache_folder_leaves_the_answer_alone(tmp_path, monkeypatch):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"  # root writes anywhere: a file where the folder should be
        blocker.write_text("")
        monkeypatch.setenv("RDFLOW_CACHE_DIR", str(blocker / "sub"))
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        monkeypatch.setenv("RDFLOW_CACHE_DIR", str(ro / "sub"))
    toolcache._MEMO.clear()
    exe = _binary(tmp_path / "tool")
    assert toolcache.remembered(exe, "v", lambda: [1]) == [1]
    toolcache._MEMO.clear()


def test_ffmpeg_probes_go_through_the_cache(cache):
    from rdflow.codecs import ffmpeg_tools
    from rdflow.metrics import libvmaf as vmaf

    exe = ffmpeg_tools.ffmpeg_exe()
    ffmpeg_tools.available_encoders.cache_clear()
    vmaf._model_loads.cache_clear()
    try:
        encoders = ffmpeg_tools.available_encoders(exe)
        assert {"libx264", "mjpeg"} <= encoders
        assert vmaf._has_libvmaf(exe)
        assert vmaf._model_loads(exe, "vmaf_v0.6.1")
        assert not vmaf._model_loads(exe, "no_such_model")
        facts = json.loads(cache.read_text())[toolcache.binary_key(exe)]
        assert sorted(facts["ffmpeg -encoders"]) == sorted(encoders)
        assert facts["ffmpeg -filters has libvmaf"] is True
        assert facts["libvmaf loads model vmaf_v0.6.1"] is True
        assert "libvmaf loads model no_such_model" not in facts  # a no is asked again
    finally:
        ffmpeg_tools.available_encoders.cache_clear()
        vmaf._model_loads.cache_clear()
