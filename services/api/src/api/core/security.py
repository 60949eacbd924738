"""API keys: random, shown once, stored only as a digest."""

import hashlib
import secrets


def new_api_key() -> str:
    """A fresh key with 256 bits of entropy, URL-safe so it fits an Authorization header as is."""
    return secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    """Digest stored in (and looked up from) the database.

    A fast unsalted hash is enough here: the keys are high-entropy random strings, so there is no
    dictionary to attack, and a deterministic digest lets us find the user by an indexed look-up.
    """
    return hashlib.sha256(api_key.encode()).hexdigest()
