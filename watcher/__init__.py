"""cce-upgrade-watcher: watches Huawei Cloud CCE upgrade workflows and notifies people."""

__version__ = "0.1.0"
