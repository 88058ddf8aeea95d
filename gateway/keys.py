"""Loading (or, in embedded mode, creating) the JWT signing key ring."""

from __future__ import annotations

from pathlib import Path

from connectors.credentials import CredentialManager, LocalKeyRing
from connectors.credentials import KeyRingError as CredentialKeyRingError
from connectors.private_files import private_root
from gateway.security.redis_records import PURPOSE as RECORD_PURPOSE
from gateway.security.redis_records import RecordSeal
from gateway.settings import Settings, SettingsError
from tenants.tokens import KeyRing, KeyRingError


def keyring_path(settings: Settings) -> Path:
    return settings.auth.jwt_keyring or settings.server.data_dir / "keys" / "jwt-keyring.json"


def load_keyring(settings: Settings) -> KeyRing:
    """The ring from FILEGATE_JWT_KEYRING; embedded mode generates one on first run, production refuses."""
    path = keyring_path(settings)
    if path.exists():
        private_keys_dir(settings, path)
    try:
        return KeyRing.load(path)
    except KeyRingError:
        if settings.server.mode == "production" or path.exists():
            raise SettingsError(
                "FILEGATE_JWT_KEYRING must name a readable key ring (create one with `filegate jwt rotate`)"
            ) from None
    ring = KeyRing.generate()
    private_keys_dir(settings, path)
    ring.save(path)
    return ring


def ensure_key_rings(settings: Settings) -> None:
    """Create the key rings embedded mode generates, once, in the process that starts the others.

    Each gateway process (granian runs several) and each worker would otherwise generate its own ring when
    none exists yet, and sign with a key the others do not hold: their tokens and sealed records would be
    refused by every other process until a restart. Production never generates one (see the loaders)."""
    if settings.server.mode != "production":
        load_keyring(settings)
        load_credential_ring(settings)


def credential_keyring_path(settings: Settings) -> Path:
    return settings.server.data_dir / "keys" / "credentials.json"


def load_credentials(settings: Settings) -> CredentialManager:
    """The credential manager over FILEGATE_KEYRING; embedded mode generates a ring, production refuses."""
    return CredentialManager(load_credential_ring(settings))


def load_record_seal(settings: Settings) -> RecordSeal:
    """The seal of the records Redis holds for security decisions: keys derived from FILEGATE_KEYRING, so
    every replica (and only they) holds them, and `filegate keys rotate` rotates them too."""
    return RecordSeal(load_credential_ring(settings).derived_keys(RECORD_PURPOSE))


def load_credential_ring(settings: Settings) -> LocalKeyRing:
    """FILEGATE_KEYRING; embedded mode generates a ring, production refuses to run without one."""
    source = settings.auth.keyring
    if source is None:
        if settings.server.mode == "production":
            raise SettingsError(
                "FILEGATE_KEYRING is required in production (create it with `filegate keys rotate`)"
            )
        path = credential_keyring_path(settings)
        private_keys_dir(settings, path)
        if not path.exists():
            LocalKeyRing.generate().save(path)
        source = str(path)
    try:
        return LocalKeyRing.load(source)
    except CredentialKeyRingError as exc:
        raise SettingsError(f"FILEGATE_KEYRING: {exc}") from None


def private_keys_dir(settings: Settings, path: Path) -> None:
    """The data dir's `keys/` is 0700, created so or tightened (a ring elsewhere lives in a directory the
    operator chose)."""
    keys = settings.server.data_dir / "keys"
    if path.parent == keys:
        private_root(keys)
