#!/bin/sh
# Entry point of the gfal2 client image, run as root. It prepares the container
# and then execs the given command (testbed-gfal-copy or gfal-copy) as the
# unprivileged gfal user:
#  - It installs /testbed/ca.pem into the system trust store, which davix uses
#    to verify the storage endpoints.
#  - It copies the read-only /testbed mount to /run/gfal2 (directories 0700,
#    files 0600, owned by gfal). On the host the token files are 0600 and owned
#    by the user who runs the testbed, so gfal could not read them in /testbed.
set -eu

SOURCE=/testbed
PRIVATE=/run/gfal2
CLIENT_USER=gfal

fail() {
    echo "testbed-entrypoint: $*" >&2
    exit 1
}

[ -f "$SOURCE/ca.pem" ] \
    || fail "$SOURCE/ca.pem not found; mount the testbed files at $SOURCE"
[ "$#" -gt 0 ] || fail "no command given; pass e.g. 'testbed-gfal-copy SOURCE DEST'"

cp "$SOURCE/ca.pem" /usr/local/share/ca-certificates/testbed-ca.crt
update-ca-certificates >/dev/null 2>&1 \
    || fail "update-ca-certificates failed for $SOURCE/ca.pem"

rm -rf "$PRIVATE"
install -d -m 0700 -o "$CLIENT_USER" -g "$CLIENT_USER" "$PRIVATE"
cp -RL "$SOURCE/." "$PRIVATE/"
chown -R "$CLIENT_USER:$CLIENT_USER" "$PRIVATE"
find "$PRIVATE" -type d -exec chmod 0700 {} +
find "$PRIVATE" -type f -exec chmod 0600 {} +

# gfal2 looks for an X.509 certificate in ~/.globus, and the private directory
# has none.
export HOME="$PRIVATE"
exec setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_USER" --init-groups \
    --no-new-privs "$@"
