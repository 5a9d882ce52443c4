#!/bin/sh
# Entry point of the XRootD testbed image. It runs as root, prepares the
# container and then execs xrootd as the xrootd user:
#  - It installs /testbed/ca.pem into the system trust store, which the SciTokens
#    plugin uses to fetch the issuers' discovery documents and JWKS over https.
#  - It copies /testbed to /run/testbed, owned by xrootd and closed to others,
#    because XRootD rejects a TLS key that others can read.
#  - It creates the data directory /srv/xrootd/data, which XRootD exports as /data.
#  - It binds both ports named in xrootd.cfg on 127.0.0.1 through
#    testbed-listen-loopback (listen-loopback.pl). XRootD logs to stderr.
set -eu

SERVICE_USER=xrootd
SOURCE_DIR=/testbed
CONFIG_DIR=/run/testbed
DATA_DIR=/srv/xrootd/data
ADMIN_DIR=/var/spool/xrootd
PID_DIR=/run/xrootd
CONFIG_FILE="$CONFIG_DIR/xrootd.cfg"

log() {
    echo "testbed-entrypoint: $*" >&2
}

fail() {
    log "$*"
    exit 1
}

for file in ca.pem tls/cert.pem tls/key.pem xrootd.cfg scitokens.cfg; do
    [ -f "$SOURCE_DIR/$file" ] \
        || fail "missing $SOURCE_DIR/$file; mount the rendered configuration there"
done
getent passwd "$SERVICE_USER" >/dev/null \
    || fail "user $SERVICE_USER not found; rebuild the image"

cp "$SOURCE_DIR/ca.pem" /usr/local/share/ca-certificates/testbed-ca.crt
update-ca-certificates >/dev/null

rm -rf "$CONFIG_DIR"
mkdir -p "$CONFIG_DIR"
cp -R "$SOURCE_DIR/." "$CONFIG_DIR/"
chown -R "$SERVICE_USER:$SERVICE_USER" "$CONFIG_DIR"
chmod -R go-rwx "$CONFIG_DIR"
chmod 0600 "$CONFIG_DIR/tls/key.pem"

mkdir -p "$DATA_DIR" "$ADMIN_DIR" "$PID_DIR"
chown "$SERVICE_USER:$SERVICE_USER" "$DATA_DIR" "$ADMIN_DIR" "$PID_DIR"

# The ports come from the rendered configuration, so it stays the only place
# that names them.
root_port=$(sed -nE 's/^\s*xrd\.port\s+([0-9]+)\s*$/\1/p' "$CONFIG_FILE")
http_port=$(sed -nE 's/^\s*xrd\.protocol\s+XrdHttp:([0-9]+)\s.*$/\1/p' "$CONFIG_FILE")
case "$root_port" in
    '' | *[!0-9]*)
        fail "expected one line 'xrd.port PORT' in $CONFIG_FILE, found '$root_port'" ;;
esac
case "$http_port" in
    '' | *[!0-9]*)
        fail "expected one line 'xrd.protocol XrdHttp:PORT libXrdHttp.so'" \
            "in $CONFIG_FILE, found '$http_port'" ;;
esac

log "XRootD $(cat /etc/testbed-version): root:// on 127.0.0.1:$root_port," \
    "https on 127.0.0.1:$http_port"
# --reset-env sets HOME to the xrootd user's home (/var/spool/xrootd), where
# the SciTokens library keeps its key cache.
exec setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups \
    --reset-env --no-new-privs \
    /usr/local/libexec/testbed-listen-loopback "$root_port" "$http_port" -- \
    /usr/bin/xrootd -c "$CONFIG_FILE" -l - -n testbed
