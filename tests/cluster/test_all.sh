#!/usr/bin/env bash
# make test-all: the whole suite, with what its tests need on this machine. Debian's chromium (the history page's
# browser tests, tests/bench/track/test_history_page.py) is installed when missing and this is root; the one-node SLURM
# (tests/cluster/slurm.sh, which installs its Debian packages when missing) is started for the run and stopped
# after; Ray's cluster is started by its tests (tests/bench/run/test_ray_executor.py). Where chromium or SLURM cannot be had,
# their tests skip and say why; where a daemon fails, they fail.
#   bash tests/cluster/test_all.sh PYTHON [PYTEST ARGUMENTS...]     (exit code: pytest's)
set -euo pipefail
py=$1
shift
cd "$(dirname "$0")/../.."
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ]; then
  { apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "test_all.sh: chromium could not be installed: the history page's browser tests will skip"
fi
slurm=tests/cluster/slurm.sh
if bash "$slurm" up >/dev/null; then
  trap 'bash "$slurm" down >/dev/null' EXIT
else
  echo "test_all.sh: SLURM did not start (exit $?); its tests will say why"
fi
"$py" -m pytest tests "$@"
