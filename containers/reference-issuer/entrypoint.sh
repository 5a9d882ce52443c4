#!/bin/sh
# Entry point of the reference issuer image, run as root.
#
# Installs the testbed CA from /testbed/ca.pem into the system trust store, copies
# the read-only /testbed mount to a private directory owned by the issuer user
# (directories 0700, files 0600), and then runs the reference_issuer package as
# that user. The image's PYTHONPATH puts the package on the module search path.
set -eu

SOURCE=/testbed
PRIVATE=/run/issuer
SERVICE_USER=issuer

fail() {
    echo "testbed-entrypoint: $*" >&2
    exit 1
}

[ -f "$SOURCE/ca.pem" ] || fail "$SOURCE/ca.pem not found; mount the testbed files at $SOURCE"
[ -f "$SOURCE/issuer.json" ] || fail "$SOURCE/issuer.json not found; mount the testbed files at $SOURCE"

cp "$SOURCE/ca.pem" /usr/local/share/ca-certificates/testbed-ca.crt
update-ca-certificates >/dev/null

rm -rf "$PRIVATE"
install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$PRIVATE"
cp -RL "$SOURCE/." "$PRIVATE/"
chown -R "$SERVICE_USER:$SERVICE_USER" "$PRIVATE"
find "$PRIVATE" -type d -exec chmod 0700 {} +
find "$PRIVATE" -type f -exec chmod 0600 {} +

exec setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups \
    --no-new-privs \
    /opt/issuer/bin/python -m reference_issuer "$PRIVATE/issuer.json"
