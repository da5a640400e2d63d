"""The daemon: scheduling, polling, lifecycle. The only place where the parts are wired."""
