#!/usr/bin/env bash
# Install Debian's chromium and chromium-driver for the console's browser test, if missing
# (needs root; without it the test skips and says why).
set -euo pipefail
if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "chromium.sh: no chromium and not root: the browser test will skip" >&2
    exit 0
fi
echo "chromium.sh: installing Debian's chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
