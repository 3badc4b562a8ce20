"""The check switch is loud while it is off: every send is then allowed, and a deploy starts with it off.

Each process of the gate (every web worker, the mirror worker) runs one `SwitchWatch`: it logs `switch.off` as a
warning when it starts and then every GATEWAY_SWITCH_WARNING_SECONDS for as long as the check stays off.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from gateway.events import emit
from gateway.store import Store

log = logging.getLogger(__name__)

HOW_TO_TURN_ON = ("the Marketo check is off: every send is allowed (check_disabled). Turn it on in the admin "
                  "console or with PATCH /v1/admin/settings {\"marketo_check_enabled\": true}")


class SwitchWatch:
    def __init__(self, store: Store, interval: float, process: str, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.interval = interval
        self.process = process  # "web" or "worker": which process says so
        self.clock = clock
        self._last_warning: float | None = None

    def check(self) -> bool:
        """Warn when the check is off and the last warning is at least `interval` old; True when it warned."""
        try:
            enabled = self.store.settings.get().marketo_check_enabled
        except SQLAlchemyError as error:  # the database's outage is /readyz's news; try again next round
            log.debug("could not read the check switch: %s", type(error).__name__)
            return False
        if enabled:
            self._last_warning = None  # turned off again later: warn at once
            return False
        now = self.clock()
        if self._last_warning is not None and now - self._last_warning < self.interval:
            return False
        self._last_warning = now
        emit("switch.off", logging.WARNING, enabled=False, process=self.process, message=HOW_TO_TURN_ON)
        return True

    def run(self, stop: threading.Event) -> None:
        """Check now, then once a minute at most (a switch turned back off is told within that), until `stop`."""
        while True:
            self.check()
            if stop.wait(min(self.interval, 60.0)):
                return

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="switch-watch", daemon=True)
        thread.start()
        return thread


def watch_switch(gate, process: str, stop: threading.Event | None = None) -> threading.Thread:
    """Start this process's watch (a daemon thread); `stop` ends it, else it ends with the process."""
    return SwitchWatch(gate.store, gate.config.switch_warning_seconds, process).start(stop or threading.Event())
