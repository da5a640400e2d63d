"""The daemon: composition (app), lifecycle, the registry of watches, the poller, root tasks."""
