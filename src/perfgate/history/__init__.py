"""The history store: every session's runs kept across sessions, so change points can be found along them.

``HistoryStore.open(resolve_url(option))`` opens (creates, upgrades) the store;
``store.record_run(results, status)`` records one case's trials as one run;
``store.series(id)`` gives its runs for :func:`perfgate.judge.changepoint.judge_history`.
Modules: ``location`` (URL, redaction, errors), ``tables`` (schema and
migrations), ``keys`` (series key and per-run environment), ``store``,
``transfer`` (import and export); the command is ``perfgate history`` (perfgate/cli/history.py).
"""
