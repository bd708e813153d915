#!/usr/bin/env bash
# CI: install SLURM and munge from Debian's packages, for tests/test_slurm.py (the
# `slurm` marker), which starts a one-node cluster on localhost. A one-off: does
# nothing when the programs are already there. Needs root and apt (Debian/Ubuntu);
# the test itself skips with the reason where they are missing, unless
# LIVERBURDEN_REQUIRE_SLURM=1 makes a missing SLURM a failure.
set -euo pipefail

missing=0
for program in munged slurmctld slurmd sbatch squeue sinfo scontrol; do
    command -v "$program" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 0 ]; then
    echo "slurm-setup: SLURM and munge already installed ($(slurmd -V))"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm-setup: cannot install SLURM here (needs root and apt-get)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# slurm-wlm-basic-plugins (a dependency) holds every plugin the test cluster uses.
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge
echo "slurm-setup: installed $(slurmd -V)"
