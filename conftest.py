"""Root conftest for running perfgate from a checkout.

The plugin is normally loaded through its ``pytest11`` entry point once the
package is installed (``pip install -e .``); this keeps a bare checkout usable
with ``PYTHONPATH=src pytest perf`` too.
"""

import importlib.metadata


def _plugin_registered_by_entry_point() -> bool:
    return any(ep.value == "perfgate.plugin" for ep in importlib.metadata.entry_points(group="pytest11"))


pytest_plugins = [] if _plugin_registered_by_entry_point() else ["perfgate.plugin"]
