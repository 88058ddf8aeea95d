"""Loading (or, in embedded mode, creating) the JWT signing key ring."""

from __future__ import annotations

from pathlib import Path

from gateway.settings import Settings, SettingsError
from tenants.tokens import KeyRing, KeyRingError


def keyring_path(settings: Settings) -> Path:
    return settings.auth.jwt_keyring or settings.server.data_dir / "keys" / "jwt-keyring.json"


def load_keyring(settings: Settings) -> KeyRing:
    """The ring from FILEGATE_JWT_KEYRING; embedded mode generates one on first run, production refuses."""
    path = keyring_path(settings)
    try:
        return KeyRing.load(path)
    except KeyRingError:
        if settings.server.mode == "production" or path.exists():
            raise SettingsError(
                "FILEGATE_JWT_KEYRING must name a readable key ring (create one with `filegate jwt rotate`)"
            ) from None
    ring = KeyRing.generate()
    ring.save(path)
    return ring
