#!/bin/sh
# Entry point of the scitokens-python validator image, run as root.
#
# Installs /testbed/ca.pem into the system trust store, where the validation
# script's key fetches find it, and then execs the given command (by default
# "sleep infinity") as the unprivileged validator user. The testbed's readiness
# probe waits for /usr/local/share/ca-certificates/testbed-ca.crt.
set -eu

SOURCE=/testbed
SERVICE_USER=validator

fail() {
    echo "testbed-entrypoint: $*" >&2
    exit 1
}

[ -f "$SOURCE/ca.pem" ] \
    || fail "$SOURCE/ca.pem not found; mount the testbed files at $SOURCE"
[ "$#" -gt 0 ] || fail "no command given; the image's default is 'sleep infinity'"

# The readiness probe waits for testbed-ca.crt, so that name must appear only
# after update-ca-certificates has added the CA to the bundle. The CA is therefore
# installed as testbed-ca-staging.crt first and then hard-linked to the final name.
CA_DIR=/usr/local/share/ca-certificates
cp "$SOURCE/ca.pem" "$CA_DIR/testbed-ca-staging.crt"
update-ca-certificates >/dev/null 2>&1 \
    || fail "update-ca-certificates failed for $SOURCE/ca.pem"
ln -f "$CA_DIR/testbed-ca-staging.crt" "$CA_DIR/testbed-ca.crt"

exec setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups \
    --no-new-privs "$@"
