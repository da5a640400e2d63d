"""How many poll runs execute at once, in total and per lane, and the runs held for a slot.

A lane is an API host (a region). The total cap keeps an overloaded daemon's memory flat
(a held run is a dict entry, a started one a task with its frames). The cap per lane keeps
one region from taking every slot: when its API hangs, its runs wait out their timeouts in
the client's per-host queue, and with the total cap alone they held all the slots, so the
other regions' polls were held behind them for minutes (never blind: issue 7). Runs that
send no request now (lane None: a target another replica holds) count only in the total.
"""

from __future__ import annotations

from collections import Counter
from itertools import count


class InFlight:
    """Admit runs up to ``total`` at once and ``per_lane`` per lane; hold the rest, FIFO."""

    def __init__(self, total: int, per_lane: int) -> None:
        if total < 1 or per_lane < 1:
            raise ValueError("need total >= 1 and per_lane >= 1")
        self.total = total
        self.per_lane = per_lane
        self._lane_of: dict[str, str | None] = {}  # admitted run -> its lane
        self._per_lane: Counter[str | None] = Counter()
        self._held: dict[str | None, dict[str, int]] = {}  # lane -> held job -> order
        self._held_lane: dict[str, str | None] = {}
        self._order = count()

    def __len__(self) -> int:
        return len(self._lane_of)

    def is_held(self, job_id: str) -> bool:
        return job_id in self._held_lane

    @property
    def held(self) -> int:
        return len(self._held_lane)

    def admit(self, job_id: str, lane: str | None) -> bool:
        """True: the run may start now (it is counted until ``release``); False: it is
        held (or stays held) until ``next_held`` gives it back."""
        self.unhold(job_id)
        if self._has_room(lane):
            self._lane_of[job_id] = lane
            self._per_lane[lane] += 1
            return True
        self._held.setdefault(lane, {})[job_id] = next(self._order)
        self._held_lane[job_id] = lane
        return False

    def release(self, job_id: str) -> None:
        """The run has ended; its slot is free."""
        if job_id not in self._lane_of:
            return
        lane = self._lane_of.pop(job_id)
        self._per_lane[lane] -= 1
        if not self._per_lane[lane]:
            del self._per_lane[lane]

    def unhold(self, job_id: str) -> None:
        """Forget a held run (it starts another way, or its job was removed)."""
        if job_id not in self._held_lane:
            return
        lane = self._held_lane.pop(job_id)
        queue = self._held[lane]
        del queue[job_id]
        if not queue:
            del self._held[lane]

    def next_held(self) -> str | None:
        """Take the longest-held run whose lane has room now (None: none may start).
        Lanes are few (regions), so looking at each lane's oldest run is cheap."""
        if len(self._lane_of) >= self.total:
            return None
        best: tuple[int, str] | None = None
        for lane, queue in self._held.items():
            if not self._has_room(lane):
                continue
            job_id, order = next(iter(queue.items()))
            if best is None or order < best[0]:
                best = (order, job_id)
        if best is None:
            return None
        self.unhold(best[1])
        return best[1]

    def _has_room(self, lane: str | None) -> bool:
        if len(self._lane_of) >= self.total:
            return False
        return lane is None or self._per_lane[lane] < self.per_lane
