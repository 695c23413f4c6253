#!/bin/sh
# What nginx:stable's /docker-entrypoint.d/20-envsubst-on-templates.sh does: only variables that
# are set are substituted, so nginx's own $host, $remote_addr ... stay as they are.
set -eu
defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
  [ -f "$template" ] || continue
  out="/etc/nginx/conf.d/$(basename "$template" .template)"
  envsubst "$defined" < "$template" > "$out"
done
exec "$@"
