#!/bin/sh
# Entry point of the scitokens-cpp validator image, run as root. It installs
# /testbed/ca.pem into the system trust store, through which libcurl verifies
# the issuer's discovery document and JWKS, and then execs the command
# (by default sleep infinity, which keeps the container up for docker exec).
# The testbed's readiness probe waits for the installed certificate file.
set -eu

CA_FILE=/testbed/ca.pem
TRUSTED=/usr/local/share/ca-certificates/testbed-ca.crt

fail() {
    echo "testbed-entrypoint: $*" >&2
    exit 1
}

[ -f "$CA_FILE" ] || fail "$CA_FILE not found; mount the testbed files at /testbed"
[ "$#" -gt 0 ] || fail "no command given; pass e.g. 'sleep infinity'"

# The readiness probe checks for $TRUSTED, so that name appears only after the
# bundle contains the CA. The first update-ca-certificates adds the CA under a
# pending name, and the second one, after the rename, refreshes the hash links.
PENDING=/usr/local/share/ca-certificates/testbed-ca-pending.crt
cp "$CA_FILE" "$PENDING"
update-ca-certificates >/dev/null 2>&1 \
    || fail "update-ca-certificates failed for $CA_FILE"
mv "$PENDING" "$TRUSTED"
update-ca-certificates >/dev/null 2>&1 \
    || fail "update-ca-certificates failed for $CA_FILE"
echo "testbed-entrypoint: installed $CA_FILE into the trust store"

exec "$@"
