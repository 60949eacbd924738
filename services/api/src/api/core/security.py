"""Secrets at rest: API keys (shown once, stored as a digest) and stored idempotent answers."""

import hashlib
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def new_api_key() -> str:
    """A fresh key with 256 bits of entropy, URL-safe so it fits an Authorization header as is."""
    return secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """Digest stored in (and looked up from) the database.

    A fast unsalted hash is enough here: the keys are high-entropy random strings, so there is no
    dictionary to attack, and a deterministic digest lets us find the user by an indexed look-up.
    """
    return hashlib.sha256(api_key.encode()).hexdigest()


# --- Idempotency-Key records (api/idempotency.py) ----------------------------------------------
# The client's key is never stored: only a digest to find the record by, and an AES-GCM key
# derived from it (HKDF, another purpose) that encrypts the stored answer. Whoever reads the
# database without the client's key can neither replay nor decrypt an answer holding an API key.

_NONCE_BYTES = 12


def idempotency_key_digest(key: str) -> str:
    return hashlib.sha256(b"idempotency-key lookup\0" + key.encode()).hexdigest()


def _cipher(key: str) -> AESGCM:
    derived = HKDF(
        algorithm=SHA256(), length=32, salt=None, info=b"idempotency-key response v1"
    ).derive(key.encode())
    return AESGCM(derived)


def seal(key: str, plaintext: bytes, context: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``key``; ``context`` is authenticated, not stored."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + _cipher(key).encrypt(nonce, plaintext, context)


def unseal(key: str, sealed: bytes, context: bytes) -> bytes:
    """Decrypt what ``seal`` made; raises ``cryptography.exceptions.InvalidTag`` if tampered."""
    nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    return _cipher(key).decrypt(nonce, ciphertext, context)
