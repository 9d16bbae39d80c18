#!/usr/bin/env bash
# Verifies that the vendored socket.io client is byte-for-byte the official
# npm release named in static/vendor/socket.io/VERSION (nothing edited by hand).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
vendor="$root/static/vendor/socket.io"
file="socket.io.esm.min.js"

version="$(tr -d '[:space:]' < "$vendor/VERSION")"
if [[ ! "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    echo "check-vendor: bad version '$version' in $vendor/VERSION" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if ! (cd "$tmp" && npm pack --silent "socket.io-client@$version" > /dev/null); then
    echo "check-vendor: could not fetch socket.io-client@$version with npm pack" >&2
    exit 1
fi
tar -xzf "$tmp/socket.io-client-$version.tgz" -C "$tmp"

status=0
for pair in "dist/$file:$file" "LICENSE:LICENSE"; do
    upstream="$tmp/package/${pair%%:*}"
    vendored="$vendor/${pair#*:}"
    if ! cmp -s "$upstream" "$vendored"; then
        echo "check-vendor: MISMATCH: $vendored differs from socket.io-client@$version ${pair%%:*}" >&2
        status=1
    fi
done

if [[ $status -eq 0 ]]; then
    echo "check-vendor: OK: static/vendor/socket.io matches socket.io-client@$version"
fi
exit $status
