"""Edge security: authentication, guards, rate limits, headers, client address."""
