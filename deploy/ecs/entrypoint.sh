#!/bin/sh
# Gives each worker a unique identity before starting it. Task placement keys
# on the worker id (the host:port of SLUICE_ADVERTISED_URL, else of
# SLUICE_REST_LISTEN); every container listens on 0.0.0.0:8083, so without
# this all workers of a cluster would share one id and each would run every
# task. In ECS awsvpc mode the task's own ENI address is its only global
# address, and it is also the address the load balancer and peers reach.
set -eu
if [ -z "${SLUICE_ADVERTISED_URL:-}" ] && [ "${1:-}" = worker ]; then
  port=${SLUICE_REST_LISTEN##*:}
  for ip in $(hostname -I 2>/dev/null || true); do
    case $ip in
      127.*|169.254.*|*:*) continue ;;  # loopback, link-local (ECS metadata), IPv6
    esac
    SLUICE_ADVERTISED_URL="http://$ip:$port"
    export SLUICE_ADVERTISED_URL
    break
  done
fi
exec /usr/local/bin/sluice "$@"
