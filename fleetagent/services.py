"""Fleet writes: registering nodes and rotating their tokens."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from console.credentials import credential_generate, credential_matches, credential_prefix
from console.errors import NotFound
from fleetagent.models import Node


@transaction.atomic
def node_create(*, name: str, dedicated_tenant=None, gpu_model: str = "") -> tuple[Node, str]:
    """A new node and its token's plaintext (shown once)."""
    cred = credential_generate("vfn")
    node = Node(
        name=name,
        token_prefix=cred.prefix,
        token_hash=cred.secret_hash,
        dedicated_tenant=dedicated_tenant,
        gpu_model=gpu_model,
    )
    node.full_clean()
    node.save()
    return node, cred.plaintext


def node_token_rotate(*, node: Node) -> str:
    cred = credential_generate("vfn")
    Node.objects.filter(pk=node.pk).update(token_prefix=cred.prefix, token_hash=cred.secret_hash, token_revoked_at=None)
    node.refresh_from_db()
    return cred.plaintext


def node_token_revoke(*, node: Node) -> None:
    Node.objects.filter(pk=node.pk).update(token_revoked_at=timezone.now())


def node_authenticate(*, token: str) -> Node:
    """The node a presented agent token belongs to; NotFound for wrong or revoked tokens."""
    prefix = credential_prefix(token or "")
    node = Node.objects.filter(token_prefix=prefix).first() if prefix else None
    if node is None or node.token_revoked_at is not None or not credential_matches(token, node.token_hash):
        raise NotFound("Unknown or revoked node token.", code="invalid_node_token")
    return node
