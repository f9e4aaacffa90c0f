"""Outbound HTTP for Integrate nodes: the client, its SSRF guard and request signing."""

from rejoinder.integrations.http import IntegrationClient
from rejoinder.integrations.policy import IntegratePolicy
from rejoinder.integrations.signing import sign, signature_headers, verify_signature
from rejoinder.integrations.ssrf import Resolver, system_resolver

__all__ = [
    "IntegratePolicy",
    "IntegrationClient",
    "Resolver",
    "sign",
    "signature_headers",
    "system_resolver",
    "verify_signature",
]
