"""Sources from outside the engine: git repositories (through the `git` CLI) and files served
over HTTP (through httpx). Each turns a remote location into content the cache can key by:
a commit id, a sha256 of the bytes."""
