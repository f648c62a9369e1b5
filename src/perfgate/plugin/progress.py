"""Progress lines (installs, boots, one-line notes) to the terminal, past pytest's output capture."""

from __future__ import annotations

import pytest


def _terminal_progress(config: pytest.Config):
    """Progress lines (long installs and boots) to the terminal, past pytest's output capture."""

    def emit(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            from perfgate.engines.provision import stderr_progress

            stderr_progress(line)
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    return emit
