"""OpenID Connect sign-in: per-tenant providers, authorization code + PKCE, ID token validation."""
