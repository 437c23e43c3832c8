#!/bin/sh
# Print the Debian mirror URI this machine's apt uses for the main archive
# (not -security, not -updates/-backports only, not a third-party repository).
# Reads /etc/apt/sources.list (one-line "deb" entries) first, then
# /etc/apt/sources.list.d/*.list and *.sources (deb822 "URIs:" fields), in apt's
# order. Override with XMPP_EJABBERD_MIRROR.
set -eu
if [ -n "${XMPP_EJABBERD_MIRROR:-}" ]; then
    echo "$XMPP_EJABBERD_MIRROR"
    exit 0
fi
exec python3 - "$@" <<'PY'
import glob, re, sys

# Debian release codenames and aliases that denote a main archive suite.
MAIN_SUITE = re.compile(
    r"^(buster|bullseye|bookworm|trixie|forky|duke|sid|"
    r"oldoldstable|oldstable|stable|testing|unstable)$")

def one_line(path):
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):          # [ option=value ... ]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words.pop(0)
        if len(words) >= 2:
            yield words[0], [words[1]]

def deb822(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    for para in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in para.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split()

entries = []
if glob.glob("/etc/apt/sources.list"):
    entries += one_line("/etc/apt/sources.list")
for path in sorted(glob.glob("/etc/apt/sources.list.d/*")):
    if path.endswith(".list"):
        entries += one_line(path)
    elif path.endswith(".sources"):
        entries += deb822(path)

for uri, suites in entries:
    if "security" in uri:
        continue
    if any(MAIN_SUITE.match(s) for s in suites):
        print(uri.rstrip("/"))
        sys.exit(0)
sys.exit("mirror.sh: no Debian main archive found in /etc/apt sources; "
         "set XMPP_EJABBERD_MIRROR")
PY
