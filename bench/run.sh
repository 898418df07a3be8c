#!/usr/bin/env bash
# make bench: install wrk and nginx from Debian's packages when missing, then run the
# benchmark (bench/bench.py; arguments are passed on, e.g. --duration 4).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "bench: please install ${missing[*]} (Debian: apt-get install wrk nginx-light)" >&2
        exit 1
    fi
    echo "bench: installing ${missing[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    pkgs=()
    for p in "${missing[@]}"; do
        # nginx-light (bookworm) is the smallest build with what the bench needs;
        # newer releases only ship "nginx".
        if [ "$p" = nginx ] && apt-cache show nginx-light >/dev/null 2>&1; then
            pkgs+=(nginx-light)
        else
            pkgs+=("$p")
        fi
    done
    # policy-rc.d 101: do not let the package start a system nginx on port 80.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
fi

exec python3 bench/bench.py "$@"
