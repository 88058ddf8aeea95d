"""Building a connector from a connection's kind, config and (opened) secrets.

`Endpoints` holds what the operator decides, not the tenant: the base URLs of Microsoft's login and Graph
services and of the Instagram Graph API (configurable so tests can point them at local fakes), the local
connector's directory, and whether a tenant may point a connector at a private address. Every connector
reaches its service through `connectors.outbound` (the address rule at connect time, no redirects):
`tenant_outbound()` for a destination a tenant chose, `operator_outbound()` for the operator's base URLs.
SDK modules are imported only when their kind is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connectors.base import Connector, Publisher
from connectors.endpoints import check_endpoint
from connectors.outbound import Outbound
from connectors.paths import ObjectRoot
from connectors.schemas import (
    AzureBlobConfig,
    AzureBlobSecrets,
    Config,
    InstagramConfig,
    InstagramSecrets,
    LocalConfig,
    S3Config,
    S3Secrets,
    Secrets,
    SharePointConfig,
    SharePointSecrets,
)


@dataclass(frozen=True, slots=True)
class Endpoints:
    # `<data>/storage`: a local connection's objects live in `<tenant_id>/<base_path>/` under it.
    local_root: Path
    login_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    instagram_url: str = "https://graph.instagram.com"
    allow_private: bool = False  # may a tenant's endpoint_url/account_url name a private address?
    # Azurite (and some S3-compatible servers) need a pinned API version; None uses the SDK's.
    azure_api_version: str | None = None
    # A CA bundle (PEM path) to trust for Microsoft endpoints besides the system's (private PKI, tests).
    ca_bundle: str | None = None
    # Instagram: how often to poll a media container, and for how long at most.
    instagram_poll_interval: float = 2.0
    instagram_max_wait: float = 120.0
    # The rule and resolver for tenant-chosen destinations; None: public addresses only (any address under
    # allow_private), resolved by the system. Tests inject a narrower rule or a changing resolver here.
    outbound: Outbound | None = None

    def tenant_outbound(self) -> Outbound:
        return self.outbound or Outbound.for_tenants(allow_private=self.allow_private)

    def operator_outbound(self) -> Outbound:
        return self.tenant_outbound().trusting()


def open_connector(
    config: Config, secrets: Secrets, endpoints: Endpoints, root: ObjectRoot
) -> Connector | Publisher:
    """The connector for one connection whose objects live in `root` (the tenant's id first).

    Raises ConnectorError for an endpoint that is not allowed.
    """
    match config, secrets:
        case LocalConfig(), _:
            from connectors.local import LocalConnector

            return LocalConnector(endpoints.local_root, root)
        case S3Config(), S3Secrets():
            from connectors.s3 import S3Connector

            if config.endpoint_url:
                check_endpoint(config.endpoint_url, allow_private=endpoints.allow_private)
            return S3Connector(config, secrets, endpoints.tenant_outbound())
        case AzureBlobConfig(), AzureBlobSecrets():
            from connectors.azure_blob import AzureBlobConnector

            check_endpoint(config.account_url, allow_private=endpoints.allow_private)
            return AzureBlobConnector(config, secrets, endpoints)
        case SharePointConfig(), SharePointSecrets():
            from connectors.sharepoint import SharePointConnector

            return SharePointConnector(config, secrets, endpoints, ca_bundle=endpoints.ca_bundle)
        case InstagramConfig(), InstagramSecrets():
            from connectors.instagram import InstagramPublisher

            return InstagramPublisher(
                config,
                secrets,
                endpoints,
                poll_interval=endpoints.instagram_poll_interval,
                max_wait=endpoints.instagram_max_wait,
            )
    raise TypeError("config and secrets of different kinds")  # pragma: no cover
