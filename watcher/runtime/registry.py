"""The registry of watches, and the ONE scheme of their store keys.

Why this module exists: a watch is named by a typed ``WatchKey`` (a target name plus a
workflow id, the target's cluster watch, or the target itself), never by string prefixes. The
store still persists plain string keys (``commit_poll``'s key, ``save_kv``'s key); this
module owns the one encode/decode between the two, so no other module spells
``f"{name}/{uid}"`` or knows that a ``_``-prefixed tail is special (the store keys a
target's health by its name alone).

``Registry`` holds what is being watched: the live workflow watches, the recently finished
ones (still shown by the API and the status page), each cluster target's one polling job
(its ``ClusterWatch``, under the historical name ``discoveries``) and each target's health.
It does no I/O and starts no jobs: the app decides, the registry records.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from watcher.core.models import TERMINAL_PHASES
from watcher.core.state import WatchState

FINISHED_SHOWN = 100  # finished workflows kept in /api/v1/workflows and on the status page


class KeyKind(StrEnum):
    """What a key names; the non-workflow kinds are stored with a reserved tail."""

    WORKFLOW = "workflow"
    DISCOVERY = "_discovery"  # a cluster watch: its job id, its known workflow ids (``save_kv``)
    TARGET = "_target"  # the target's own events (health alerts), in ``commit_poll``


@dataclass(frozen=True, slots=True, order=True)
class WatchKey:
    """A typed key: one workflow of a target, a target's discovery, or the target."""

    target: str
    kind: KeyKind = KeyKind.WORKFLOW
    workflow_id: str = ""

    @classmethod
    def workflow(cls, target: str, workflow_id: str) -> WatchKey:
        # The cloud's ids are UUIDs: never empty, never with a reserved "_" tail.
        return cls(target, KeyKind.WORKFLOW, workflow_id)

    @classmethod
    def discovery(cls, target: str) -> WatchKey:
        return cls(target, KeyKind.DISCOVERY)

    @classmethod
    def of_target(cls, target: str) -> WatchKey:
        return cls(target, KeyKind.TARGET)

    def encode(self) -> str:
        """The string the store persists (and the API shows as a workflow's ``key``)."""
        tail = self.workflow_id if self.kind is KeyKind.WORKFLOW else self.kind.value
        return f"{self.target}/{tail}"

    @classmethod
    def decode(cls, text: str) -> WatchKey | None:
        """The key a stored string names; None for a string of no known shape."""
        target, sep, tail = text.rpartition("/")
        if not sep or not target or not tail:
            return None
        if tail.startswith("_"):
            try:
                return cls(target, KeyKind(tail))
            except ValueError:
                return None
        return cls(target, KeyKind.WORKFLOW, tail)

    def __str__(self) -> str:
        return self.encode()


def resumable(states: Mapping[str, WatchState], target: str) -> Iterator[str]:
    """Ids of the target's stored workflows that had not ended: watch them again."""
    for text, data in states.items():
        key = WatchKey.decode(text)
        if key is None or key.target != target or key.kind is not KeyKind.WORKFLOW:
            continue
        if data.workflow.phase not in TERMINAL_PHASES:
            yield key.workflow_id


W = TypeVar("W")  # a workflow watch (poller.WorkflowWatch)
D = TypeVar("D")  # a cluster target's one job (poller.ClusterWatch)
H = TypeVar("H")  # a target's health (poller.TargetHealth)


@dataclass
class Registry(Generic[W, D, H]):
    """What is watched, by typed key; generic so it never imports the poller it indexes."""

    watches: dict[WatchKey, W] = field(default_factory=dict)
    # Finished workflows stay visible (API, status page) until newer ones push them out.
    finished: OrderedDict[WatchKey, W] = field(default_factory=OrderedDict)
    discoveries: dict[str, D] = field(default_factory=dict)
    healths: dict[str, H] = field(default_factory=dict)

    def add(self, key: WatchKey, watch: W) -> None:
        self.watches[key] = watch

    def finish(self, key: WatchKey) -> None:
        """Move a watch that ended to the finished list (bounded, oldest out first)."""
        watch = self.watches.pop(key, None)
        if watch is None:
            return
        self.finished[key] = watch
        while len(self.finished) > FINISHED_SHOWN:
            self.finished.popitem(last=False)

    def remove_target(self, target: str) -> tuple[list[tuple[WatchKey, W]], D | None]:
        """Forget everything of a target; returns its live watches and its discovery, whose
        jobs the caller stops."""
        for key in [k for k in self.finished if k.target == target]:
            del self.finished[key]
        live = [(k, w) for k, w in self.watches.items() if k.target == target]
        for key, _ in live:
            del self.watches[key]
        self.healths.pop(target, None)
        return live, self.discoveries.pop(target, None)

    def shown(self) -> list[W]:
        """Finished, then live watches: the order of the API's workflow list."""
        return [*self.finished.values(), *self.watches.values()]
