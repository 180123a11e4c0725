"""Secrets at rest: credentials kept in the database are Fernet tokens, never plaintext.

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) authenticates what it decrypts, so a
wrong key or a tampered column fails loudly instead of yielding garbage. Keys are a list,
newest first (`MultiFernet`): new values are encrypted with the first, any of them decrypts,
and `Keyring.rotate` re-encrypts an old value under the first. Rotating a key is therefore:
put the new key in front, run `syncflows mailchimp rotate-keys`, then drop the old one.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.redact import register_secret


class UnreadableSecret(RuntimeError):
    """A stored secret that none of the configured keys decrypts."""


def new_key() -> str:
    """A fresh key, as `MAILCHIMP_TOKEN_KEYS` takes it (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


class Keyring:
    """Encrypts with the first key, decrypts with any (comma-separated, newest first)."""

    def __init__(self, keys: str, variable: str) -> None:
        self.variable = variable  # named in errors, so the user knows what to fix
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ValueError(f"{variable} holds no key")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])
        except ValueError as error:  # never echo the value: it is a key
            raise ValueError(
                f"{variable}: each key must be 32 url-safe base64-encoded bytes "
                f"(make one with `syncflows mailchimp new-key`): {type(error).__name__}"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext, registered for redaction (it is a credential)."""
        try:
            value = self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise UnreadableSecret(
                f"a stored credential cannot be decrypted with the keys in {self.variable} "
                "(was a key removed before `rotate-keys` ran?)"
            ) from None
        register_secret(value)
        return value

    def rotate(self, ciphertext: str) -> str:
        """The same secret, encrypted under the first key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise UnreadableSecret(
                f"a stored credential cannot be decrypted with the keys in {self.variable}"
            ) from None
