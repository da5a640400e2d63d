"""`python -m watcher` is the same as the `cce-upgrade-watcher` command."""

from watcher.cli import main

main()
