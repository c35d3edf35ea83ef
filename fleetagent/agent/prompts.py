"""Prompt audio of cloned voices on a GPU host: fetched from the console, cached on disk.

The console serves a job's prompt audio at ``GET /fleet/v1/jobs/<job_id>/prompt-audio`` to
the node the job is open on (node token); the host keeps one file per (voice key, version):
a new version replaces the older ones of that voice, and the whole cache stays under
``max_bytes`` (least recently used files go first).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from console.errors import VoxfleetError

logger = logging.getLogger(__name__)

PROMPT_CACHE_MAX_BYTES = 256 * 1024 * 1024
# A prompt is 3-15 s of audio (a few MB as WAV); anything far larger is refused while it streams.
PROMPT_AUDIO_MAX_BYTES = 32 * 1024 * 1024
FETCH_TIMEOUT_S = 20.0
# File suffixes by the console's Content-Type (decoders of some engines go by the name).
SUFFIXES = {
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "audio/webm": ".webm",
}


class PromptAudioUnavailable(VoxfleetError):
    """The console would not (or could not) hand over a job's prompt audio."""

    code = "prompt_audio_unavailable"
    status = 502


def prompt_audio_url(console_http: str, job_id: int) -> str:
    return f"{console_http.rstrip('/')}/fleet/v1/jobs/{int(job_id)}/prompt-audio"


def prompt_audio_fetch(
    *, console_http: str, token: str, job_id: int, client: httpx.Client | None = None
) -> tuple[bytes, str]:
    """(audio, file suffix) of ``job_id``'s prompt from the console; PromptAudioUnavailable naming why not."""
    url = prompt_audio_url(console_http, job_id)
    http = client or httpx.Client(timeout=FETCH_TIMEOUT_S)
    try:
        with http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
            if response.status_code != 200:
                response.read()
                raise PromptAudioUnavailable(
                    f"The console answered HTTP {response.status_code} for job {job_id}'s prompt audio: "
                    f"{response.text[:200]}"
                )
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > PROMPT_AUDIO_MAX_BYTES:
                    raise PromptAudioUnavailable(
                        f"Job {job_id}'s prompt audio is over {PROMPT_AUDIO_MAX_BYTES // (1024 * 1024)} MB."
                    )
            if not data:
                raise PromptAudioUnavailable(f"The console sent no prompt audio for job {job_id}.")
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            return bytes(data), SUFFIXES.get(content_type, ".audio")
    except httpx.HTTPError as exc:
        raise PromptAudioUnavailable(f"Could not fetch job {job_id}'s prompt audio: {exc}") from exc
    finally:
        if client is None:
            http.close()


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class PromptCache:
    """One file per (voice key, version) under ``root``, at most ``max_bytes`` in all; thread-safe."""

    def __init__(self, root: str | os.PathLike, *, max_bytes: int = PROMPT_CACHE_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()

    def _stem(self, key: str) -> str:
        # Readable and collision-free: the key's safe spelling plus a hash of the key itself.
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return f"{_UNSAFE.sub('_', key)[:64]}-{digest}"

    def path(self, *, key: str, version: int) -> Path | None:
        """The cached file of this voice version, if there is one."""
        found = sorted(self.root.glob(f"{self._stem(key)}-v{int(version)}.*"))
        return found[0] if found else None

    def get(self, *, key: str, version: int, fetch: Callable[[], tuple[bytes, str]]) -> Path:
        """The cached file of this voice version; ``fetch()`` -> (audio, suffix) when it is missing."""
        with self._lock:
            path = self.path(key=key, version=version)
            if path is not None:
                os.utime(path)  # recently used: evicted last
                return path
            data, suffix = fetch()
            path = self.root / f"{self._stem(key)}-v{int(version)}{suffix}"
            self.root.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.root, prefix=".fetch-")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
            for older in self.root.glob(f"{self._stem(key)}-v*.*"):
                if older != path:
                    older.unlink(missing_ok=True)  # an older version of this voice is never used again
            self._evict(keep=path)
            return path

    def _evict(self, *, keep: Path) -> None:
        files = [(p.stat().st_mtime, p) for p in self._files() if p != keep]
        total = keep.stat().st_size + sum(p.stat().st_size for _, p in files)
        for _, victim in sorted(files):
            if total <= self.max_bytes:
                break
            total -= victim.stat().st_size
            victim.unlink(missing_ok=True)
            logger.info("prompt cache over %d bytes: dropped %s", self.max_bytes, victim.name)

    def _files(self) -> list[Path]:
        # Every cached prompt (not a half-written ``.fetch-*`` temporary).
        return [p for p in self.root.glob("*-v*.*") if not p.name.startswith(".")] if self.root.is_dir() else []

    def size(self) -> int:
        return sum(p.stat().st_size for p in self._files())
