#!/usr/bin/env bash
# Host settings the engine needs once per boot (root only): see shared machine notes.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "prepare-host: not root, skipping host preparation" >&2
  exit 0
fi
# crun refuses cgroup v1 hybrid setups unless the hugetlb controller is mounted.
if [ -d /sys/fs/cgroup ] && ! grep -q ' /sys/fs/cgroup/hugetlb ' /proc/self/mountinfo; then
  if [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || true
  fi
fi
# Containers reach the outside through the engine's bridge and NAT.
sysctl -q -w net.ipv4.ip_forward=1
modprobe overlay 2>/dev/null || true
# Steps of other architectures run under QEMU user emulation: binfmt_misc with Debian's
# qemu-user-static entries (registered with the F flag, so they work in every container).
if [ -d /proc/sys/fs/binfmt_misc ] && [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
fi
if command -v update-binfmts >/dev/null && [ -e /proc/sys/fs/binfmt_misc/register ]; then
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
fi
