"""Login, token refresh and logout, TOTP MFA, /v1/me and the JWKS."""
