#!/bin/sh
# Install a one-node SLURM (Debian's slurmctld, slurmd, slurm-client, munge) for
# tests/test_slurm.py. Run as root (.ci/run does). Idempotent: a second run with
# everything present only prints the versions and exits.
#
# No service is started here: a policy-rc.d that exits 101 stops the packages'
# maintainer scripts from starting munge/slurmctld/slurmd (there is no systemd in
# CI containers anyway). tests/slurm/cluster.py writes its own slurm.conf and
# munge key in a temp dir and starts the daemons by hand.
set -eu

PKGS="slurmctld slurmd slurm-client munge"

if [ "$(id -u)" != 0 ]; then
    echo "slurm_setup.sh: must run as root (apt-get install); try: sudo sh .ci/slurm_setup.sh" >&2
    exit 1
fi

if command -v sbatch >/dev/null 2>&1 && command -v slurmctld >/dev/null 2>&1 \
   && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; then
    echo "slurm_setup.sh: already installed: $(slurmd -V), $(munged --version)"
    exit 0
fi

# Keep package scripts from starting services; restore whatever was there after.
POLICY=/usr/sbin/policy-rc.d
SAVED=""
if [ -e "$POLICY" ]; then
    SAVED=$(mktemp)
    cp -p "$POLICY" "$SAVED"
fi
restore() {
    if [ -n "$SAVED" ]; then mv -f "$SAVED" "$POLICY"; else rm -f "$POLICY"; fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' > "$POLICY"
chmod 755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
LOG=$(mktemp)
# shellcheck disable=SC2086
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $PKGS; } >"$LOG" 2>&1; then
    cat "$LOG" >&2
    echo "slurm_setup.sh: apt-get failed (output above)" >&2
    exit 1
fi
rm -f "$LOG"
echo "slurm_setup.sh: installed $PKGS in $(( $(date +%s) - start )) s: $(slurmd -V), $(munged --version)"
