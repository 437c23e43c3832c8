#!/bin/sh
# Build the lab image xmpp-ejabberd-lab:SUITE (SUITE = bookworm, trixie or forky) from
# Debian's archive with debootstrap and load it with `docker import`.
# Idempotent: does nothing when the image exists and was built from the same package list.
# No container registry is needed; the mirror comes from this machine's apt sources
# (see mirror.sh; override with XMPP_EJABBERD_MIRROR).
set -eu

SUITE=${1:-}
case "$SUITE" in
    bookworm|trixie|forky) ;;
    *) echo "usage: $0 bookworm|trixie|forky" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "$0")" && pwd)
DOCKER=/usr/bin/docker
IMAGE=${XMPP_EJABBERD_IMAGE_REPO:-xmpp-ejabberd-lab}:$SUITE
# Everything the lab and the collection's tests need inside a node: the containers
# sit on an internal network and cannot download anything later.
# systemd-sysv, openssh-server and sudo make a container behave like a VM (systemd as
# PID 1, Ansible over SSH as an unprivileged user with sudo); apt-utils indexes the
# image's local package repository.
PACKAGES=${XMPP_EJABBERD_LAB_PACKAGES:-python3,python3-apt,ejabberd,nftables,iptables,ufw,dbus,firewalld,libpam-systemd,systemd-sysv,openssh-server,apt-utils,iproute2,procps,tini,ca-certificates,iputils-ping,netcat-openbsd,sudo,passwd,hostname,less}
# Bumped whenever the steps after debootstrap change: an image made by older steps is rebuilt.
RECIPE=2
BUILT_FROM="$RECIPE:$PACKAGES"
# The image's own package source (no container reaches a mirror): ejabberd and all it
# depends on, so that a host without ejabberd can install it with apt.
REPO=/srv/xmpp-ejabberd-lab/apt

log() { echo "build-image.sh: $*" >&2; }

"$HERE/dockerd.sh"

# One build per suite at a time (parallel test runs may call us together).
LOCK=/run/lock/xmpp-ejabberd-build-$SUITE.lock
mkdir -p /run/lock
exec 9>"$LOCK"
flock 9

# The image records its package list: an image built from an older list is rebuilt.
BUILT_WITH=$("$DOCKER" image inspect --format '{{ index .Config.Labels "xmpp-ejabberd.packages" }}' "$IMAGE" 2>/dev/null || true)
if [ "$BUILT_WITH" = "$BUILT_FROM" ]; then
    log "image $IMAGE already exists, nothing to do"
    exit 0
fi
OLD_ID=$("$DOCKER" image inspect --format '{{ .Id }}' "$IMAGE" 2>/dev/null || true)
[ -z "$OLD_ID" ] || log "image $IMAGE was built with other packages (${BUILT_WITH:-unrecorded}); rebuilding"

if ! command -v debootstrap >/dev/null 2>&1 || [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    log "installing debootstrap and debian-archive-keyring"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends debootstrap debian-archive-keyring; then
        apt-get update
        apt-get install -y --no-install-recommends debootstrap debian-archive-keyring
    fi
fi

# An older debootstrap may not know a newer suite: all current Debian suites use
# the same script as sid.
SCRIPTS=/usr/share/debootstrap/scripts
if [ ! -e "$SCRIPTS/$SUITE" ]; then
    log "debootstrap has no script for $SUITE, linking it to sid"
    ln -s sid "$SCRIPTS/$SUITE"
fi

MIRROR=$("$HERE/mirror.sh")
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
START=$(date +%s)
DIR=$(mktemp -d "/var/tmp/xmpp-ejabberd-lab.$SUITE.XXXXXX")

cleanup() {
    # Never rm -rf through a mount left behind by a failed debootstrap.
    awk -v d="$DIR/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
        while IFS= read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
    rm -rf --one-file-system "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

log "debootstrap $SUITE from $MIRROR into $DIR"
# debootstrap itself installs a policy-rc.d (exit 101) and a fake start-stop-daemon
# while it configures packages, so neither ejabberd nor epmd starts during the build.
debootstrap --variant=minbase --keyring="$KEYRING" --include="$PACKAGES" \
    "$SUITE" "$DIR" "$MIRROR" >"$DIR.log" 2>&1 || {
    log "debootstrap failed; last lines of $DIR.log:"
    tail -n 30 "$DIR.log" >&2
    exit 1
}
rm -f "$DIR.log"

# Nothing from the chroot may still run (it would keep files open).
for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/root" 2>/dev/null)" = "$DIR" ]; then
        log "process ${p#/proc/} still runs in the chroot: $(tr '\0' ' ' <"$p/cmdline")"
        exit 1
    fi
done

# The local package source: the .debs debootstrap fetched for ejabberd's dependency
# closure, indexed, and the only apt source of the image.
chroot "$DIR" apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances ejabberd | grep -E '^[a-z0-9]' | sort -u >"$DIR.closure"
mkdir -p "$DIR$REPO"
while IFS= read -r pkg; do
    for deb in "$DIR"/var/cache/apt/archives/"${pkg}"_*.deb; do
        [ -e "$deb" ] && cp "$deb" "$DIR$REPO/"
    done
done <"$DIR.closure"
rm -f "$DIR.closure"
[ -n "$(ls "$DIR$REPO"/ejabberd_*.deb 2>/dev/null)" ] || { log "ejabberd's .deb is missing from $DIR/var/cache/apt/archives"; exit 1; }
chroot "$DIR" sh -c "cd $REPO && apt-ftparchive packages . >Packages"
rm -f "$DIR/etc/apt/sources.list" "$DIR"/etc/apt/sources.list.d/*
echo "deb [trusted=yes] file:$REPO ./" >"$DIR/etc/apt/sources.list.d/xmpp-ejabberd-lab.list"
chroot "$DIR" apt-get clean
rm -rf "$DIR"/var/lib/apt/lists/*
chroot "$DIR" apt-get -qq update

# VM-like: an unprivileged admin with passwordless sudo (the harness installs its SSH
# key), sshd with host keys made at first boot (not shared by every container), and the
# firewall daemons installed but off, as on a fresh server (a test turns one on).
chroot "$DIR" useradd --create-home --shell /bin/bash admin
printf 'admin ALL=(ALL) NOPASSWD:ALL\n' >"$DIR/etc/sudoers.d/xmpp-ejabberd-lab-admin"
chmod 0440 "$DIR/etc/sudoers.d/xmpp-ejabberd-lab-admin"
rm -f "$DIR"/etc/ssh/ssh_host_*
mkdir -p "$DIR/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
    >"$DIR/etc/systemd/system/ssh.service.d/xmpp-ejabberd-lab-host-keys.conf"
chroot "$DIR" systemctl disable firewalld.service >/dev/null 2>&1 || true
rm -f "$DIR/usr/sbin/policy-rc.d"
: >"$DIR/etc/resolv.conf"         # docker provides its own
: >"$DIR/etc/machine-id"
rm -f "$DIR/var/lib/dbus/machine-id"
# The package created a cookie at build time; it would be shared by every
# container of this image. Tests and roles write their own.
rm -f "$DIR/var/lib/ejabberd/.erlang.cookie"
rm -rf "$DIR"/var/log/*.log "$DIR/var/log/ejabberd"/* "$DIR"/var/cache/debconf/*-old

tar --numeric-owner -C "$DIR" -c . | "$DOCKER" import \
    --change 'CMD ["/usr/bin/tini", "--", "sleep", "infinity"]' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL xmpp-ejabberd.packages=$BUILT_FROM" \
    --message "debootstrap $SUITE from $MIRROR" - "$IMAGE" >/dev/null

END=$(date +%s)
log "built $IMAGE in $((END - START))s"
# The former image, now untagged, goes unless a container still uses it.
[ -z "$OLD_ID" ] || "$DOCKER" image rm "$OLD_ID" >/dev/null 2>&1 || true
"$DOCKER" image ls "$IMAGE"
