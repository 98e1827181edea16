#!/usr/bin/env python3
"""Serve this host's pip setup to a `docker build --network host`, as build arguments.

Reads ``pip config list`` (files and PIP_* environment) and hands the build the same package
indexes, local wheel directory and CA bundle. http(s) indexes pass through as they are; local ones
(``file://`` indexes, find-links directories, the ``cert`` file) are served read-only over HTTP on
127.0.0.1 only, for as long as this process runs, because a build cannot see host paths:

    python3 docker/pip_serve.py ARGS_FILE &     # writes KEY=VALUE lines, one per build argument
    docker build --network host $(sed 's/^/--build-arg /' ARGS_FILE) ...

An index ``file:///srv/pypi/simple`` is served from its parent (``/srv/pypi``) so that the
relative links of its pages (``../../files/...``) resolve. Nothing here names a host or a path:
everything is read from pip's configuration on the machine where it runs.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def pip_config(python: str) -> dict[str, str]:
    """``pip config list`` as {key: value}, later scopes (site, env) overriding earlier ones."""
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True).stdout
    config: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if not value:
            continue
        config[key.rsplit(".", 1)[-1]] = " ".join(shlex.split(value))
    return config


def local_path(location: str) -> Path | None:
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    if "://" not in location:
        return Path(location)
    return None


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    args_file = Path(argv[0])
    python = argv[1] if len(argv) > 1 else sys.executable
    config = pip_config(python)
    root = Path(tempfile.mkdtemp(prefix="cube-pip-serve-"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    served = 0

    def serve(path: Path, parent_of_index: bool = False) -> str:
        nonlocal served
        served += 1
        name = f"d{served}"
        if parent_of_index:  # .../pypi/simple -> serve .../pypi, URL .../dN/simple
            (root / name).symlink_to(path.parent)
            return f"{base}/{name}/{path.name}/"
        (root / name).symlink_to(path)
        return f"{base}/{name}/"

    def urls(key: str, index: bool) -> str:
        result = []
        for location in config.get(key, "").split():
            path = local_path(location)
            if path is None:
                result.append(location)
            elif path.is_dir():
                result.append(serve(path, parent_of_index=index))
            else:
                print(f"pip_serve: {key} {location} is not a directory; left out", file=sys.stderr)
        return " ".join(result)

    build_args = {
        "PIP_INDEX_URL": urls("index-url", True),
        "PIP_EXTRA_INDEX_URL": urls("extra-index-url", True),
        "PIP_FIND_LINKS": urls("find-links", False),
        "PIP_TRUSTED_HOST": config.get("trusted-host", ""),
    }
    cert = config.get("cert") or os.environ.get("PIP_CERT")
    if cert and Path(cert).is_file():
        (root / "ca.pem").symlink_to(Path(cert).resolve())
        build_args["PIP_CERT_URL"] = f"{base}/ca.pem"
    lines = [f"{key}={value}" for key, value in build_args.items() if value]
    tmp = args_file.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(args_file)  # appears whole: the caller waits for it
    print(f"pip_serve: serving the host's pip setup on {base}: " + ", ".join(k for k, v in build_args.items() if v), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        thread.join()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        shutil.rmtree(root, ignore_errors=True)  # the links only, never what they point at
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
