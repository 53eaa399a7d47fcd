#!/usr/bin/env bash
# Set up this machine for the SemanticNN runtime: the real Fashion-MNIST data set (Debian package)
# and a virtual environment .venv with every extra. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
if [ "${SNN_SKIP_CHROMIUM:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
  need_apt+=(chromium)   # the dashboard test drives the page in headless Chromium
fi
# `snn edge serve --mqtt` is tested against a real broker the tests start (744 kB of archives, 1.9 MB on disk)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null; }
  else
    echo "setup: missing ${need_apt[*]}; install with: sudo apt-get install -y ${need_apt[*]}" >&2
  fi
fi

# The C firmware (snn mcu build|qemu|agree --engine c): host gcc, the ARM cross-compiler and QEMU.
# No recommends: the firmware is freestanding, so newlib is not needed. Measured on Debian 12:
# 66.8 MB of archives, 544 MB on disk, 8.8 s with most archives already in apt's cache.
need_fw=()
command -v gcc >/dev/null 2>&1 || need_fw+=(gcc)
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need_fw+=(gcc-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need_fw+=(qemu-system-arm)
if [ ${#need_fw[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_fw[*]} with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_fw[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_fw[@]}" >/dev/null; }
  else
    echo "setup: missing ${need_fw[*]}; install with: sudo apt-get install -y --no-install-recommends ${need_fw[*]}" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]'
