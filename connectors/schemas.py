"""Per-kind connection `config` (returned by the API) and `secrets` (never returned), as msgspec Structs.

Unknown fields are refused everywhere. `ConnectionSpec` is the one tagged union (tag `kind`) a create
request decodes into; `KINDS` maps a kind to its two schemas for PATCH and for reading rows back.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from connectors.base import InvalidKey
from connectors.paths import normalize_base
from tenants.inputs import Line, Text, anchored

Kind = Literal["local", "s3", "azure_blob", "sharepoint", "instagram"]

Name = Annotated[Line, msgspec.Meta(min_length=1, max_length=200)]
Secret = Annotated[Text, msgspec.Meta(min_length=1, max_length=16384)]  # PEM certificates span lines
ShortText = Annotated[Line, msgspec.Meta(min_length=1, max_length=512)]
Url = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=2048,
        pattern=anchored(r"https?://[^\s/?#\x00-\x1f\x7f-\x9f]+[^\s\x00-\x1f\x7f-\x9f]*"),
    ),
]
BucketName = Annotated[str, msgspec.Meta(pattern=anchored(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]"))]
Region = Annotated[str, msgspec.Meta(pattern=anchored(r"[a-z0-9\-]{1,32}"))]
Container = Annotated[str, msgspec.Meta(pattern=anchored(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}"))]
GraphVersion = Annotated[str, msgspec.Meta(pattern=anchored(r"v\d{1,2}\.\d{1,2}"))]
Guid = Annotated[str, msgspec.Meta(pattern=anchored(r"[0-9A-Za-z\-.]{1,64}"))]


class _Schema(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    def __post_init__(self) -> None:
        for field in ("prefix", "folder", "base_path"):
            value = getattr(self, field, None)
            if isinstance(value, str):
                try:
                    normalize_base(value)
                except InvalidKey as exc:
                    raise ValueError(f"{field}: {exc.detail}") from None


# --- local --------------------------------------------------------------------------------------------
class LocalConfig(_Schema, frozen=True):
    # A folder inside the tenant's own directory: `<data>/storage/<tenant_id>/<base_path>`.
    base_path: ShortText


class LocalSecrets(_Schema, frozen=True):
    pass


# --- S3 -----------------------------------------------------------------------------------------------
class S3Config(_Schema, frozen=True):
    bucket: BucketName
    region: Region
    endpoint_url: Url | None = None
    prefix: ShortText | None = None
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    sse_kms_key_id: ShortText | None = None
    role_arn: ShortText | None = None  # assume this role with the stored keys (STS)
    external_id: ShortText | None = None


class S3Secrets(_Schema, frozen=True):
    access_key_id: Secret
    secret_access_key: Secret
    session_token: Secret | None = None


# --- Azure Blob ---------------------------------------------------------------------------------------
class AzureBlobConfig(_Schema, frozen=True):
    account_url: Url
    container: Container
    prefix: ShortText | None = None


class AzureBlobSecrets(_Schema, frozen=True):
    """Exactly one way in: an account key, a SAS token, or a service principal."""

    account_key: Secret | None = None
    sas_token: Secret | None = None
    tenant_id: Guid | None = None
    client_id: Guid | None = None
    client_secret: Secret | None = None

    def __post_init__(self) -> None:
        modes = [
            self.account_key is not None,
            self.sas_token is not None,
            any(v is not None for v in (self.tenant_id, self.client_id, self.client_secret)),
        ]
        if sum(modes) != 1:
            raise ValueError(
                "give exactly one of: account_key, sas_token, or tenant_id+client_id+client_secret"
            )
        if modes[2] and None in (self.tenant_id, self.client_id, self.client_secret):
            raise ValueError("a service principal needs tenant_id, client_id and client_secret")


# --- SharePoint ---------------------------------------------------------------------------------------
class SharePointConfig(_Schema, frozen=True):
    site_url: Url
    drive: ShortText | None = None  # document library name; the site's default drive when absent
    folder: ShortText | None = None


class SharePointSecrets(_Schema, frozen=True):
    """App-only credentials: a client secret or a certificate (PEM with its private key)."""

    tenant_id: Guid
    client_id: Guid
    client_secret: Secret | None = None
    certificate_pem: Secret | None = None
    certificate_password: Secret | None = None

    def __post_init__(self) -> None:
        if (self.client_secret is None) == (self.certificate_pem is None):
            raise ValueError("give exactly one of client_secret or certificate_pem")
        if self.certificate_password is not None and self.certificate_pem is None:
            raise ValueError("certificate_password needs certificate_pem")


# --- Instagram ----------------------------------------------------------------------------------------
class InstagramConfig(_Schema, frozen=True):
    ig_user_id: Annotated[str, msgspec.Meta(pattern=anchored(r"[0-9]{1,32}"))]
    graph_api_version: GraphVersion = "v21.0"


class InstagramSecrets(_Schema, frozen=True):
    access_token: Secret


# --- the tagged union of a create request ---------------------------------------------------------------
class LocalSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="local", tag_field="kind"):
    name: Name
    config: LocalConfig
    secrets: LocalSecrets = LocalSecrets()


class S3Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="s3", tag_field="kind"):
    name: Name
    config: S3Config
    secrets: S3Secrets


class AzureBlobSpec(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="azure_blob", tag_field="kind"
):
    name: Name
    config: AzureBlobConfig
    secrets: AzureBlobSecrets


class SharePointSpec(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="sharepoint", tag_field="kind"
):
    name: Name
    config: SharePointConfig
    secrets: SharePointSecrets


class InstagramSpec(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="instagram", tag_field="kind"
):
    name: Name
    config: InstagramConfig
    secrets: InstagramSecrets


ConnectionSpec = LocalSpec | S3Spec | AzureBlobSpec | SharePointSpec | InstagramSpec
Config = LocalConfig | S3Config | AzureBlobConfig | SharePointConfig | InstagramConfig
Secrets = LocalSecrets | S3Secrets | AzureBlobSecrets | SharePointSecrets | InstagramSecrets

KINDS: dict[str, tuple[type[Any], type[Any]]] = {
    "local": (LocalConfig, LocalSecrets),
    "s3": (S3Config, S3Secrets),
    "azure_blob": (AzureBlobConfig, AzureBlobSecrets),
    "sharepoint": (SharePointConfig, SharePointSecrets),
    "instagram": (InstagramConfig, InstagramSecrets),
}

# Config fields that name the connection's base path inside the tenant root.
BASE_FIELD = {
    "local": "base_path",
    "s3": "prefix",
    "azure_blob": "prefix",
    "sharepoint": "folder",
    "instagram": None,
}


def decode_config(kind: str, raw: Any) -> Config:
    config_type, _ = KINDS[kind]
    result: Config = msgspec.convert(raw, config_type)
    return result


def decode_secrets(kind: str, raw: Any) -> Secrets:
    _, secrets_type = KINDS[kind]
    result: Secrets = msgspec.convert(raw, secrets_type)
    return result


def secret_values(secrets: Secrets) -> dict[str, str]:
    """The fields that are set, by name (what gets sealed, one ciphertext per field)."""
    return {k: v for k, v in msgspec.structs.asdict(secrets).items() if v is not None}


def config_dict(config: Config) -> dict[str, Any]:
    return {k: v for k, v in msgspec.structs.asdict(config).items() if v is not None}


def base_of(kind: str, config: Config) -> str | None:
    field = BASE_FIELD[kind]
    return getattr(config, field) if field else None


_SAFE_NAME = re.compile(r"\A[^\x00-\x1f\x7f-\x9f\u2028\u2029]+\Z")


def check_name(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ValueError("the name must not contain control characters")
    return name
