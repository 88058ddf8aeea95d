"""The credential manager: envelope encryption of secrets with AES-256-GCM (`cryptography`).

Every secret gets a fresh 256-bit data key; the data key is wrapped by a key-encryption key (KEK) from a
versioned key ring. Both layers carry the associated data `tenant_id|owner_id|field`, so a ciphertext
copied to another row, field or tenant fails to decrypt. New secrets use the newest KEK; `rewrap` moves a
stored secret to the newest KEK without decrypting its ciphertext (only its data key, for one call).

The key ring is behind `KeyProvider`, so a cloud KMS or Vault transit can replace the local ring.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = 1
KEY_BYTES = 32
NONCE_BYTES = 12


class CredentialError(Exception):
    """A secret could not be sealed or opened. The message never contains secret material."""


class KeyRingError(CredentialError):
    pass


@dataclass(frozen=True, slots=True)
class Binding:
    """What a secret belongs to: sealed under it, it opens only there."""

    tenant_id: str
    owner_id: str
    field: str

    def aad(self) -> bytes:
        for part in (self.tenant_id, self.owner_id, self.field):
            if "|" in part:
                raise CredentialError("binding parts must not contain '|'")
        return f"{self.tenant_id}|{self.owner_id}|{self.field}".encode()


class KeyProvider(Protocol):
    """Wraps and unwraps data keys; a KMS or Vault transit implements the same two calls."""

    @property
    def current_version(self) -> int: ...

    def wrap(self, data_key: bytes, aad: bytes) -> tuple[int, bytes]: ...

    def unwrap(self, version: int, wrapped: bytes, aad: bytes) -> bytes: ...


class LocalKeyRing:
    """Versioned 256-bit KEKs from FILEGATE_KEYRING (a JSON file, or the JSON itself)."""

    def __init__(self, keys: dict[int, bytes]) -> None:
        if not keys:
            raise KeyRingError("the key ring is empty")
        if any(len(k) != KEY_BYTES for k in keys.values()):
            raise KeyRingError("every key must be 256 bits")
        self._keys = dict(keys)

    @property
    def current_version(self) -> int:
        return max(self._keys)

    @property
    def versions(self) -> list[int]:
        return sorted(self._keys)

    def wrap(self, data_key: bytes, aad: bytes) -> tuple[int, bytes]:
        version = self.current_version
        nonce = os.urandom(NONCE_BYTES)
        return version, nonce + AESGCM(self._keys[version]).encrypt(nonce, data_key, _kek_aad(version, aad))

    def unwrap(self, version: int, wrapped: bytes, aad: bytes) -> bytes:
        key = self._keys.get(version)
        if key is None:
            raise KeyRingError(f"key version {version} is not in the key ring")
        try:
            return AESGCM(key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _kek_aad(version, aad))
        except InvalidTag:
            raise CredentialError(
                "the data key does not open here (wrong key, tenant, owner or field)"
            ) from None

    def derived_keys(self, purpose: bytes) -> dict[int, bytes]:
        """Per ring version, a 256-bit key for `purpose` (HKDF-SHA256): the KEKs themselves never leave
        the ring, and a key derived for one purpose is useless for any other."""
        return {
            version: HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose).derive(key)
            for version, key in self._keys.items()
        }

    # --- persistence -------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str) -> LocalKeyRing:
        try:
            data = json.loads(text)
            return cls({int(k["version"]): base64.b64decode(k["key"], validate=True) for k in data["keys"]})
        except (KeyError, TypeError, ValueError):
            raise KeyRingError("the key ring is malformed") from None

    @classmethod
    def load(cls, source: str) -> LocalKeyRing:
        """`source` is the ring's JSON (starting with `{`) or the path of a file holding it."""
        if source.lstrip().startswith("{"):
            return cls.from_json(source)
        try:
            return cls.from_json(Path(source).read_text())
        except OSError:
            raise KeyRingError(f"cannot read the key ring file {source}") from None

    def to_json(self) -> str:
        return json.dumps(
            {
                "keys": [
                    {
                        "version": v,
                        "key": base64.b64encode(k).decode(),
                        "created_at": datetime.now(UTC).isoformat(),
                    }
                    for v, k in sorted(self._keys.items())
                ]
            },
            indent=2,
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a key ring's directory is private too
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def generate(cls) -> LocalKeyRing:
        return cls({1: secrets.token_bytes(KEY_BYTES)})

    def with_new_key(self) -> LocalKeyRing:
        """The ring plus a newer key, which new secrets (and rewrap) will use."""
        return LocalKeyRing({**self._keys, self.current_version + 1: secrets.token_bytes(KEY_BYTES)})


def _kek_aad(version: int, aad: bytes) -> bytes:
    return b"filegate-dek|" + str(version).encode() + b"|" + aad


class Sealed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The stored form: format, KEK version, wrapped data key, nonce, ciphertext (all base64 in JSON)."""

    f: int
    kek: int
    dek: bytes
    nonce: bytes
    ct: bytes


class CredentialManager:
    def __init__(self, keys: KeyProvider) -> None:
        self._keys = keys

    def seal(self, plaintext: bytes, binding: Binding) -> str:
        aad = binding.aad()
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        version, wrapped = self._keys.wrap(data_key, aad)
        return msgspec.json.encode(
            Sealed(f=FORMAT, kek=version, dek=wrapped, nonce=nonce, ct=ciphertext)
        ).decode()

    def open(self, stored: str, binding: Binding) -> bytes:
        sealed = _decode(stored)
        aad = binding.aad()
        data_key = self._keys.unwrap(sealed.kek, sealed.dek, aad)
        try:
            return AESGCM(data_key).decrypt(sealed.nonce, sealed.ct, aad)
        except InvalidTag:
            raise CredentialError("the secret does not open here (wrong tenant, owner or field)") from None

    def needs_rewrap(self, stored: str) -> bool:
        return _decode(stored).kek != self._keys.current_version

    def rewrap(self, stored: str, binding: Binding) -> str:
        """The same ciphertext with its data key wrapped under the newest KEK."""
        sealed = _decode(stored)
        if sealed.kek == self._keys.current_version:
            return stored
        aad = binding.aad()
        data_key = self._keys.unwrap(sealed.kek, sealed.dek, aad)
        version, wrapped = self._keys.wrap(data_key, aad)
        return msgspec.json.encode(msgspec.structs.replace(sealed, kek=version, dek=wrapped)).decode()


def _decode(stored: str) -> Sealed:
    try:
        sealed = msgspec.json.decode(stored, type=Sealed)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise CredentialError("the stored secret is malformed") from None
    if sealed.f != FORMAT:
        raise CredentialError("unknown stored-secret format")
    return sealed
