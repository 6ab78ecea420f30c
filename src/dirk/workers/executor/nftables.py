"""nftables transactions in-process, through libnftables (what the `nft` command wraps).

A binding's bridge pairs are added before its client starts and removed after it ends; an
`nft` process per change costs 5-25 ms (a fork and exec on a busy machine), the library call
about 0.2 ms. Without the library (never on a host with the nftables package, which needs it)
the `nft` command is used instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import threading

_lock = threading.Lock()
_ctx: int | None = None
_lib: ctypes.CDLL | None = None
_tried = False


def _context() -> tuple[ctypes.CDLL, int] | None:
    """The library and one context (its calls are serialised by `_lock`), made once."""
    global _ctx, _lib, _tried
    if not _tried:
        _tried = True
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            return None
        lib.nft_ctx_buffer_output(ctx)  # keep listings off our stdout
        lib.nft_ctx_buffer_error(ctx)
        _lib, _ctx = lib, ctx
    if _lib is None or _ctx is None:
        return None
    return _lib, _ctx


def run(script: str) -> str | None:
    """Run one nftables transaction; None on success, else nft's error message.
    Raises OSError when neither the library nor the `nft` command is there."""
    with _lock:
        found = _context()
        if found is not None:
            lib, ctx = found
            if lib.nft_run_cmd_from_buffer(ctx, script.encode()) == 0:
                return None
            error: bytes = lib.nft_ctx_get_error_buffer(ctx) or b""
            return error.decode(errors="replace").strip() or "nft failed"
    try:
        proc = subprocess.run(
            ["nft", "-f", "-"], input=script.encode(), capture_output=True, timeout=30
        )
    except subprocess.SubprocessError as exc:
        raise OSError(str(exc)) from exc
    if proc.returncode == 0:
        return None
    return proc.stderr.decode(errors="replace").strip()
