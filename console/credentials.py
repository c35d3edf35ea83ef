"""Secrets handed to machines (API keys, node tokens): random, shown once, stored as SHA-256.

The secrets carry 256 bits of entropy, so a fast hash is enough: there is nothing to
brute-force, and lookups stay one indexed query on the public prefix.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class NewCredential:
    """A freshly minted secret: ``plaintext`` goes to the user once, the rest is stored."""

    plaintext: str
    prefix: str
    secret_hash: str


def credential_hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def credential_generate(kind: str) -> NewCredential:
    """``kind`` is a short tag such as ``vf`` (API key) or ``vfn`` (node token)."""
    public = secrets.token_hex(4)
    plaintext = f"{kind}_{public}_{secrets.token_urlsafe(32)}"
    return NewCredential(plaintext=plaintext, prefix=f"{kind}_{public}", secret_hash=credential_hash(plaintext))


def credential_prefix(plaintext: str) -> str | None:
    """The public prefix of a presented secret, or None if it is not shaped like one."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or not all(parts):
        return None
    return f"{parts[0]}_{parts[1]}"


def credential_matches(plaintext: str, secret_hash: str) -> bool:
    return hmac.compare_digest(credential_hash(plaintext), secret_hash)


def bearer_token(header_value: str | bytes | None) -> str | None:
    """The credential of an ``Authorization: Bearer <credential>`` header value.

    None when there is no header or it is another scheme (so the caller can try the next
    authenticator); otherwise what follows the scheme, stripped: "" when nothing does. A
    value with whitespace inside is more than one credential, which callers refuse. Bytes
    (raw ASGI/WSGI headers) are read as latin-1, as HTTP headers are.
    """
    if not header_value:
        return None
    if isinstance(header_value, bytes):
        header_value = header_value.decode("latin-1")
    parts = header_value.strip().split(None, 1)
    if not parts or parts[0].lower() != "bearer":
        return None
    return parts[1].strip() if len(parts) > 1 else ""
