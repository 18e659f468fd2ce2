"""Hooks: tests and alarms asked at fixed points of a rollout, judged like metric gates.

A hook kind is one module here ending in ``HOOK = HookKind(...)`` and one line in
``analysis/hooks/registry.py``; the spec's union of hooks, the daemon settings, the
README's table of hook kinds and the daemon's callers are derived from that registry.
"""
