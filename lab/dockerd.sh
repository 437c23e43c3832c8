#!/bin/sh
# Make sure Debian's Docker daemon is running (no systemd in the lab machine).
# Idempotent: does nothing when `/usr/bin/docker info` already succeeds.
# Always uses Debian's client /usr/bin/docker: a newer client may be first on PATH.
set -eu

DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd   # Debian ships the daemon in /usr/sbin
LOG=${XMPP_EJABBERD_DOCKERD_LOG:-/var/log/xmpp-ejabberd-dockerd.log}
WAIT=${XMPP_EJABBERD_DOCKERD_WAIT:-60}

log() { echo "dockerd.sh: $*" >&2; }

if [ ! -x "$DOCKERD" ] || [ ! -x "$DOCKER" ]; then
    log "docker.io is missing, installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends docker.io; then
        apt-get update
        apt-get install -y --no-install-recommends docker.io
    fi
fi

# systemd in every lab container takes inotify instances from root's per-user limit on
# the host (128 by default): with a few labs at once, boots end "degraded" or time out.
# Only ever raised, never lowered.
INOTIFY=/proc/sys/fs/inotify/max_user_instances
if [ -w "$INOTIFY" ] && [ "$(cat "$INOTIFY")" -lt 1024 ]; then
    echo 1024 > "$INOTIFY" && log "fs.inotify.max_user_instances raised to 1024 for the lab containers"
fi

if "$DOCKER" info >/dev/null 2>&1; then
    log "docker daemon already running"
    exit 0
fi

# Concurrent callers: one starts the daemon, the others wait for it.
mkdir -p /run/lock
exec 9>/run/lock/xmpp-ejabberd-dockerd.lock
flock 9
if "$DOCKER" info >/dev/null 2>&1; then
    log "docker daemon already running"
    exit 0
fi

log "starting $DOCKERD (log: $LOG)"
# setsid: the daemon must not belong to the caller's process group or session.
# 9>&-: the daemon must not inherit (and keep) the lock.
setsid "$DOCKERD" >>"$LOG" 2>&1 </dev/null 9>&- &
pid=$!

i=0
while [ "$i" -lt "$WAIT" ]; do
    if ! kill -0 "$pid" 2>/dev/null && ! "$DOCKER" info >/dev/null 2>&1; then
        log "dockerd exited early; last lines of $LOG:"
        tail -n 20 "$LOG" >&2 || true
        exit 1
    fi
    if "$DOCKER" info >/dev/null 2>&1; then
        log "docker daemon ready after ${i}s"
        exit 0
    fi
    i=$((i + 1))
    sleep 1
done
log "docker daemon not ready after ${WAIT}s; last lines of $LOG:"
tail -n 20 "$LOG" >&2 || true
exit 1
