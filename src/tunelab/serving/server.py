"""Start the HTTP service: check the run and the keys, then run uvicorn."""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn

from tunelab.errors import TunelabError
from tunelab.serving.settings import ServeSettings


def serve(settings: ServeSettings) -> None:
    """Run the HTTP service until stopped (uvicorn; with workers > 1, each worker reads the
    settings back from the environment)."""
    from tunelab.predictor import exported_model, model_dir_of
    from tunelab.serving.app import create_app
    from tunelab.serving.keys import LEGACY_KEYS_FILE, list_keys
    from tunelab.store.db import describe_database

    if settings.run is None:
        from tunelab.store.records import production

        current = production()
        if current is None:
            raise TunelabError("no RUN given and no production model; give a run directory "
                               "or promote one with `tunelab models promote RUN`")
        settings = settings.model_copy(update={"run": Path(current.path)})
    # clear errors before any worker starts: not a run, or no export for --backend onnx
    exported_model(model_dir_of(settings.run).parent, settings.backend)
    if settings.auth and not list_keys():
        legacy = (f"; import the old key file with `tunelab keys import {LEGACY_KEYS_FILE}`"
                  if LEGACY_KEYS_FILE.is_file() else "")
        raise TunelabError(f"no API keys in the store ({describe_database()}); create one "
                           "with `tunelab keys create --name NAME`, or pass --no-auth for "
                           f"local testing{legacy}")
    check_port_free(settings.host, settings.port)
    common = {"host": settings.host, "port": settings.port, "log_level": "warning",
              "access_log": False, "timeout_graceful_shutdown": 30}
    if settings.workers == 1:
        uvicorn.run(create_app(settings), **common)
    else:
        os.environ.update(settings.to_env())
        uvicorn.run("tunelab.serving.app:app_from_env", factory=True,
                    workers=settings.workers, **common)


def check_port_free(host: str, port: int) -> None:
    """A one-line error before the model loads, where uvicorn would log a traceback of
    `[Errno 98]` after it. (Another process may still take the port in between.)"""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise TunelabError(f"--port {port}: cannot listen on {host}:{port} ({error.strerror})"
                               "; stop what uses it, or choose another --port") from None
