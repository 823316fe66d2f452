"""The linkage worker: one background thread that produces, delivers and (provincial mode) polls.

A DuckDB store has one writing process, so a running web service does its own syncing: the worker enqueues
what is new every ``[sync] indicators_every_s`` (services when changed, indicators, change pages), runs the
:class:`~cim.linkage.sync.Sender` in between, and polls the ``[[city]]`` platforms every
``[sync] poll_cities_every_s``. The command line (``cim linkage sync``) runs the same steps when no service holds
the store. Stopping the worker leaves the outbox as it is; the next start resumes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cim.linkage.config import LinkageConfig
from cim.linkage.province import Province
from cim.linkage.sync import Sender, produce

log = logging.getLogger(__name__)


class LinkageWorker:
    """Background producer, sender and city poller for a store."""

    def __init__(self, store: Callable[[], Any], config: LinkageConfig,
                 services: Callable[[], dict[str, Any]] | None = None) -> None:
        self._store, self.config, self._services = store, config, services
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        if self.thread is None and (self.config.upstream or self.config.city):
            self.thread = threading.Thread(target=self._run, name="cim-linkage", daemon=True)
            self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        sync = self.config.sync
        next_produce = next_poll = 0.0
        while not self.stop_event.is_set():
            now = time.monotonic()
            try:
                store = self._store()
                if self.config.upstream and sync.indicators_every_s and now >= next_produce:
                    produce(store, self.config, services=self._services() if self._services else None)
                    next_produce = now + sync.indicators_every_s
                if self.config.city and sync.poll_cities_every_s and now >= next_poll:
                    Province(store, self.config).poll()
                    next_poll = now + sync.poll_cities_every_s
                if self.config.upstream:
                    Sender(store, self.config).send_due()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - keep the worker alive; the state is in the store
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("linkage worker step failed")
            self.stop_event.wait(sync.poll_s)
