"""Reference OAuth 2.0 token issuer for the token interop testbed.

The issuer publishes OpenID Connect Discovery 1.0 and RFC 8414 metadata, a JWKS
(RFC 7517), and a token endpoint for the client-credentials grant (RFC 6749 section
4.4). It signs WLCG and SciTokens profile tokens with the keys named in its
configuration. ``POST /testbed/mint`` signs any header and claims the testbed sends,
including malformed or wrongly signed tokens for negative tests.

Usage: ``python -m reference_issuer /path/to/issuer.json``, with the folder that
contains this package on the module search path. Relative paths in the
configuration are resolved against the folder of the configuration file. The server
listens with HTTPS on the configured loopback address only and logs to stderr.
"""
