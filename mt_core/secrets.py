"""Encryption of secrets at rest: AES-256-GCM under per-tenant keys derived from a master key."""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets as _random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .errors import SecretError

if TYPE_CHECKING:
    from .storage.base import StoredSecret

logger = logging.getLogger(__name__)

VERSION = "v1"

Keys = tuple[bytes, list[bytes]]
"""A current master key and the previous ones still readable."""


def generate_master_key() -> str:
    """A new random master key, as urlsafe base64 of 32 bytes."""
    return base64.urlsafe_b64encode(_random.token_bytes(32)).decode()


def decode_master_key(value: str, source: str = "MT_MASTER_KEY") -> bytes:
    """The 32 raw bytes of a master key given as urlsafe base64; ``source`` names it in the error."""
    try:
        raw = base64.urlsafe_b64decode(value.strip().encode() + b"=" * (-len(value.strip()) % 4))
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise SecretError(f"{source} must be urlsafe base64 of 32 bytes (make one with `mt keys generate`)")
    return raw


class SecretBox:
    """Encrypts and decrypts short secrets for one master key.

    Ciphertext format: ``v1:<key id>:<base64(nonce || ciphertext+tag)>``. The key is derived per
    tenant (HKDF-SHA256), and the associated data binds the ciphertext to its tenant and row, so
    a ciphertext copied to another row or tenant does not decrypt.

    Args:
        master_key: the key new secrets are encrypted under.
        previous: older keys still accepted for decryption (during a rotation).
        reload: for keys kept in files that another process may rotate: returns the keys when
            they changed since the last call, else ``None``. Called before encrypting and when a
            ciphertext names a key this box does not have.
    """

    def __init__(
        self, master_key: bytes, *, previous: list[bytes] | None = None, reload: Callable[[], Keys | None] | None = None
    ) -> None:
        self._keys: dict[str, bytes] = {}
        self._reload = reload
        self._use(master_key, previous or [])

    def _use(self, master_key: bytes, previous: list[bytes]) -> None:
        # keys once known stay known (a superset is swapped in first), so a concurrent reader
        # never sees a current key id without its key
        keys = {**self._keys, self.key_id(master_key): master_key}
        for old in previous:
            keys.setdefault(self.key_id(old), old)
        self._keys = keys
        self.current_key_id = self.key_id(master_key)

    def refresh(self) -> None:
        """Pick up keys changed by another process (a rotated key file); a no-op without ``reload``."""
        if self._reload is not None:
            found = self._reload()
            if found is not None:
                self._use(*found)

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.current_key_id!r})"

    @staticmethod
    def key_id(master_key: bytes) -> str:
        """A short public fingerprint of a master key (not usable to recover it)."""
        return hashlib.sha256(b"mt-core key id\0" + master_key).hexdigest()[:12]

    def _tenant_key(self, key_id: str, tenant: str) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        master = self._keys.get(key_id)
        if master is None:
            raise SecretError(
                f"secret was encrypted under master key {key_id}, which is not configured: set MT_MASTER_KEY (or"
                " MT_MASTER_KEY_PREVIOUS during a rotation) to that key, or restore the key file it was in"
            )
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"mt-core/v1", info=f"tenant:{tenant}".encode()
        ).derive(master)

    def encrypt(self, plaintext: str, *, tenant: str, context: str) -> str:
        """Encrypt ``plaintext`` for ``tenant``, bound to ``context`` (e.g. ``llm:<id>:api_key``)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.refresh()
        nonce = _random.token_bytes(12)
        key = self._tenant_key(self.current_key_id, tenant)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), _aad(tenant, context))
        return f"{VERSION}:{self.current_key_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, ciphertext: str, *, tenant: str, context: str) -> str:
        """Decrypt a value made by :meth:`encrypt` for the same tenant and context."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            version, key_id, payload = ciphertext.split(":", 2)
            blob = base64.b64decode(payload, validate=True)
        except (ValueError, AttributeError) as exc:
            raise SecretError("stored secret is malformed") from exc
        if version != VERSION or len(blob) < 12 + 16:
            raise SecretError("stored secret is malformed")
        if key_id not in self._keys:
            self.refresh()
        key = self._tenant_key(key_id, tenant)
        try:
            return AESGCM(key).decrypt(blob[:12], blob[12:], _aad(tenant, context)).decode()
        except InvalidTag:
            raise SecretError("stored secret does not decrypt for this tenant and row") from None


def tool_secret_context(tool_id: str, name: str) -> str:
    """What a tool secret's ciphertext is bound to, besides its tenant."""
    return f"tools:{tool_id}:secret:{name}"


def key_context(llm_id: str) -> str:
    """What an LLM configuration's key ciphertext is bound to, besides its tenant."""
    return f"llms:{llm_id}:api_key"


def secret_context(secret: StoredSecret) -> str:
    """What a stored ciphertext (an LLM key or a tool secret) is bound to, besides its tenant."""
    return key_context(secret.owner_id) if secret.kind == "llm" else tool_secret_context(secret.owner_id, secret.name)


def seal_tool_secrets(box: SecretBox, tenant: str, tool_id: str, values: dict[str, str]) -> list[dict[str, str | None]]:
    """Encrypt a tool's secrets for storage: ``name``, ``ciphertext`` and ``masked`` of each."""
    return [
        {"name": name, "ciphertext": box.encrypt(value, tenant=tenant, context=tool_secret_context(tool_id, name)),
         "masked": mask(value)}
        for name, value in sorted(values.items())
    ]


def _aad(tenant: str, context: str) -> bytes:
    return f"mt-core\0{VERSION}\0{tenant}\0{context}".encode()


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret of ``secrets`` (of 4 characters or more) replaced by ``[REDACTED]``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    return text


def mask(secret: str | None) -> str | None:
    """Show a secret as ``sk-ab…yz``: enough to recognise it, never enough to use it."""
    if not secret:
        return None
    if len(secret) < 12:
        return "…"
    return f"{secret[:5]}…{secret[-2:]}"
