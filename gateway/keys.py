"""Loading (or, in embedded mode, creating) the JWT signing key ring."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from connectors.credentials import CredentialManager, LocalKeyRing
from connectors.credentials import KeyRingError as CredentialKeyRingError
from connectors.private_files import create_private_file, private_root
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
                f"FILEGATE_JWT_KEYRING: no readable key ring at {path} (create one with `filegate keys init`)"
            ) from None
    create_ring(settings, path, KeyRing.generate().to_json())
    return KeyRing.load(path)  # the ring that won, if another process created one meanwhile


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
                "FILEGATE_KEYRING is required in production (create the ring with `filegate keys init`)"
            )
        path = credential_keyring_path(settings)
        if not path.exists():
            create_ring(settings, path, LocalKeyRing.generate().to_json())
        source = str(path)
    try:
        return LocalKeyRing.load(source)
    except CredentialKeyRingError as exc:
        # os.path.exists, not Path.exists: an inline ring is no path and may be longer than a file name.
        absent = not source.lstrip().startswith("{") and not os.path.exists(source)
        hint = " (create it with `filegate keys init`)" if absent else ""
        raise SettingsError(f"FILEGATE_KEYRING: {exc}{hint}") from None


@dataclass(frozen=True, slots=True)
class RingInit:
    setting: str
    """The variable that names the ring."""
    where: str
    """Its file's path, or a note that it is held inline."""
    created: bool
    loads: bool = True
    """False when a ring that was already there does not load: kept, but every process would refuse it."""


def init_key_rings(settings: Settings) -> list[RingInit]:
    """Create the JWT and the credential key ring where absent, in any mode; an existing ring is kept (and
    checked, so that an operator learns of a broken one here rather than from a gateway that will not
    start)."""
    jwt_path = keyring_path(settings)
    created = create_ring(settings, jwt_path, KeyRing.generate().to_json())
    try:
        KeyRing.load(jwt_path)
        loads = True
    except KeyRingError:
        loads = False
    done = [RingInit("FILEGATE_JWT_KEYRING", str(jwt_path), created, loads)]
    source = settings.auth.keyring
    if source is not None and source.lstrip().startswith("{"):
        where = "(inline JSON)"
        created = False
    else:
        path = Path(source) if source is not None else credential_keyring_path(settings)
        where, source = str(path), str(path)
        created = create_ring(settings, path, LocalKeyRing.generate().to_json())
    try:
        LocalKeyRing.load(source)
        loads = True
    except CredentialKeyRingError:
        loads = False
    done.append(RingInit("FILEGATE_KEYRING", where, created, loads))
    return done


def create_ring(settings: Settings, path: Path, content: str) -> bool:
    """Write a new ring (0600, in a 0700 directory) unless one is there: never overwrite a key ring, even
    when several processes create it at once (the one that lost reads the winner's)."""
    private_keys_dir(settings, path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return create_private_file(path, content)


def private_keys_dir(settings: Settings, path: Path) -> None:
    """The data dir's `keys/` is 0700, created so or tightened (a ring elsewhere lives in a directory the
    operator chose)."""
    keys = settings.server.data_dir / "keys"
    if path.parent == keys:
        private_root(keys)
