"""The GPU host's prompt-audio cache: one file per (voice key, version), bounded, fetched once."""

from __future__ import annotations

import os
import threading

import pytest

from fleetagent.agent.prompts import PromptAudioUnavailable, PromptCache


class Fetches:
    """Counts the fetches the cache makes (what the console would be asked for)."""

    def __init__(self, size: int = 1000, suffix: str = ".wav") -> None:
        self.calls = 0
        self.size = size
        self.suffix = suffix
        self._lock = threading.Lock()

    def __call__(self) -> tuple[bytes, str]:
        with self._lock:
            self.calls += 1
            return bytes([self.calls % 256]) * self.size, self.suffix


def test_a_voice_version_is_fetched_once_and_served_from_disk(tmp_path):
    cache = PromptCache(tmp_path)
    fetch = Fetches()
    first = cache.get(key="tenant-voice-7", version=1, fetch=fetch)
    again = cache.get(key="tenant-voice-7", version=1, fetch=fetch)
    assert first == again and first.suffix == ".wav" and fetch.calls == 1
    assert first.read_bytes() == bytes([1]) * 1000


def test_a_new_version_is_fetched_and_replaces_the_older_one(tmp_path):
    cache = PromptCache(tmp_path)
    fetch = Fetches()
    old = cache.get(key="tenant-voice-7", version=1, fetch=fetch)
    new = cache.get(key="tenant-voice-7", version=2, fetch=fetch)
    assert fetch.calls == 2 and new != old
    assert not old.exists() and new.read_bytes() == bytes([2]) * 1000
    # Another voice's file is not touched by it.
    other = cache.get(key="tenant-voice-8", version=1, fetch=fetch)
    assert new.exists() and other.exists()


def test_the_cache_stays_under_its_bound_dropping_the_least_recently_used(tmp_path):
    cache = PromptCache(tmp_path, max_bytes=2500)
    fetch = Fetches(size=1000)
    a = cache.get(key="a", version=1, fetch=fetch)
    b = cache.get(key="b", version=1, fetch=fetch)
    # "b" last used long ago, "a" just now: "b" is the least recently used.
    os.utime(b, (1, 1))
    cache.get(key="a", version=1, fetch=fetch)
    c = cache.get(key="c", version=1, fetch=fetch)
    assert cache.size() <= 2500
    assert a.exists() and c.exists() and not b.exists()
    assert fetch.calls == 3


def test_keys_with_odd_characters_stay_inside_the_cache_and_apart(tmp_path):
    cache = PromptCache(tmp_path / "prompts")
    fetch = Fetches()
    one = cache.get(key="../../etc/passwd", version=1, fetch=fetch)
    two = cache.get(key="..__..__etc__passwd", version=1, fetch=fetch)
    assert one.parent == tmp_path / "prompts" == two.parent and one != two and fetch.calls == 2


def test_a_failed_fetch_stores_nothing(tmp_path):
    cache = PromptCache(tmp_path)

    def refused():
        raise PromptAudioUnavailable("The console answered HTTP 403")

    with pytest.raises(PromptAudioUnavailable):
        cache.get(key="v", version=3, fetch=refused)
    assert cache.path(key="v", version=3) is None and cache.size() == 0


def test_concurrent_jobs_of_one_voice_fetch_it_once(tmp_path):
    cache = PromptCache(tmp_path)
    fetch = Fetches()
    paths = []
    threads = [
        threading.Thread(target=lambda: paths.append(cache.get(key="v", version=1, fetch=fetch))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetch.calls == 1 and len(set(paths)) == 1
