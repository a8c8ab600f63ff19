"""The campaigns this instance owns, kept in memory between batches.

A campaign's events come on one partition, and one instance owns the partition, so between
rebalances this instance is the only writer of the campaigns it processes. What it learnt
of them in its last batch stays true for the next one, and need not be read again (a batch
of owned campaigns only takes its events for new: see `_assume_new`):
- the campaign's state (the compare-and-set on the revision in the batch's write still
  guards it: a writer it did not know of makes the batch fail, forget and read again);
- that no event waits (is held) for any of its versions;
- that the outbox collection holds nothing of it that is not published (or being published).
A rebalance, a stop, a failed batch or a lost compare-and-set forgets (see BatchProcessor).
Deleted campaigns are not kept: the purge rewrites their document without a new revision.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from service.domain.ledger import Changes, View
from service.domain.state import CampaignState

# Enough for the campaigns that are live at once on one instance (a few KB each); the least
# recently used beyond it is read again when its events come back. The 1,000,000-event fill
# (10,000 campaigns) grew the service's RSS by 64 MB from 100,000 to 1,000,000 events with
# 20,000 kept, most of it these states: the bound keeps memory flat however many campaigns
# a long-lived instance has seen.
LIMIT = 2_000


@dataclass(slots=True)
class Owned:
    state: CampaignState
    noted: datetime | None  # when its delete was applied, for the retention
    held_free: bool  # no event waits for any of its versions


def _assume_new(view: View, keys: dict[str, set[str]]) -> None:
    """Take every event, new version, artifact and run of the batch for new, unread.

    Each of them is written with a unique `_id` (the processed mark, the version, the
    artifact and run upserts keyed by campaign), so a wrong guess is a duplicate key in the
    batch's write: the transaction aborts and the batch runs again from what MongoDB holds
    (`Transaction.lent`). Only a producer's duplicate or an id of another campaign costs it.
    """
    view.checked_events.update(keys["processed"])
    keys["processed"] = set()
    new_versions = keys["held"]  # the versions the batch's generation events make
    for version_id in new_versions:
        view.versions.setdefault(version_id, None)
    keys["version"] -= new_versions
    for artifact_id in view.owners_in_states(keys["artifact"]):
        view.artifact_owners[artifact_id] = None
    keys["artifact"] = set()
    runs = {r: s.campaign_id for s in view.campaigns.values() if s for r in s.runs}
    for run_id in keys["run"]:
        view.run_owners[run_id] = runs.get(run_id)
    keys["run"] = set()


class OwnedCampaigns:
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Owned] = OrderedDict()

    def covers(self, campaigns: Iterable[str]) -> bool:
        """Every one of `campaigns` is known: a batch of them reads nothing up front."""
        return all(cid in self._items for cid in campaigns)

    def lend(self, view: View, keys: dict[str, set[str]], campaigns: set[str]) -> dict[str, Owned]:
        """Fill `view` with what is known of the batch's `campaigns`, and take it out of the
        `keys` the store would read. Returns the campaigns it knew."""
        known = {cid: owned for cid in campaigns if (owned := self._items.get(cid))}
        for cid, owned in known.items():
            view.campaigns[cid] = owned.state
            self._items.move_to_end(cid)
        keys["campaign"] -= known.keys()
        if not known or len(known) < len(campaigns):
            return known
        if all(o.held_free for o in known.values()):
            # Nothing waits for any version of these campaigns: no lookup of held events.
            for version_id in keys["held"]:
                view.held[version_id] = []
        _assume_new(view, keys)
        keys["held"] = set()
        return known

    def keep(
        self,
        view: View,
        changes: Changes,
        campaigns: Iterable[str],
        noted: dict[str, datetime | None],
        *,
        held_free: bool,
    ) -> None:
        """After a batch is committed: what it leaves is known."""
        holding = {held.inbound.event.campaign_id for held in changes.held}
        for cid in campaigns:
            state = changes.campaigns.get(cid) or view.campaigns.get(cid)
            before = self._items.get(cid)
            if state is None or state.deleted:
                self._items.pop(cid, None)
                continue
            self._items[cid] = Owned(
                state,
                noted.get(cid),
                held_free=cid not in holding
                and (held_free or (before is not None and before.held_free)),
            )
            self._items.move_to_end(cid)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def outbox_unknown(self, campaigns: Iterable[str]) -> set[str]:
        """Those of `campaigns` that may have unpublished entries in the outbox collection: a
        kept campaign has none that this instance is not publishing (it is kept once its
        batch is committed, and forgotten if that batch's publication fails)."""
        return {c for c in campaigns if c not in self._items}

    def forget(self, campaigns: Iterable[str] | None = None) -> None:
        if campaigns is None:
            self._items.clear()
            return
        for cid in campaigns:
            self._items.pop(cid, None)
