"""Filesystem layers and overlayfs snapshots: a step costs what it writes, never a full copy."""
