"""`lookalike cluster status`: the stream, and each shard's replicas as their
heartbeats in the membership bucket describe them (lag, snapshot, skipped
records)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import nats.js.errors

from lookalike.cluster.membership import Member, open_bucket
from lookalike.cluster.nats_link import NatsLink


@dataclass(frozen=True)
class Heard:
    member: Member
    age_s: float        # since its last heartbeat (by the replica's clock: machines may disagree a little)


@dataclass(frozen=True)
class ClusterStatus:
    stream: str
    first_seq: int
    last_seq: int
    messages: int
    bytes: int
    leader: str
    replicas: list[Heard]


def read_status(link: NatsLink) -> ClusterStatus:
    async def read() -> ClusterStatus:
        info = await link.js.stream_info(link.config.stream)
        kv = await open_bucket(link)
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            keys = []
        heard = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:  # expired meanwhile
                continue
            member = Member(**json.loads(entry.value))
            heard.append(Heard(member, max(0.0, time.time() - member.beat_unix)))
        state = info.state
        leader = info.cluster.leader if info.cluster is not None else ""
        return ClusterStatus(link.config.stream, state.first_seq, state.last_seq, state.messages, state.bytes,
                             leader or "", sorted(heard, key=lambda h: (h.member.shard, h.member.replica)))

    return link.run(read(), timeout=15)


def format_status(status: ClusterStatus, shards: int) -> str:
    lines = [f"stream {status.stream}: records {status.first_seq}..{status.last_seq} ({status.messages} kept, "
             f"{status.bytes / 1e6:.1f} MB), leader {status.leader or '-'}"]
    now = time.time()
    for shard in range(shards):
        members = [h for h in status.replicas if h.member.shard == shard]
        lines.append(f"shard-{shard}: {len(members)} replica(s)" + ("  NONE LIVE" if not members else ""))
        for h in members:
            m = h.member
            snapshot = (f"snapshot at {m.snapshot_seq}, {now - m.snapshot_unix:.0f} s old" if m.snapshot_unix
                        else f"snapshot at {m.snapshot_seq}")
            lines.append(f"  {m.replica:<20} {m.address:<22} caught up to {m.caught_up_seq} "
                         f"(lag {max(0, status.last_seq - m.caught_up_seq)}), {snapshot}, skipped {m.skipped}, "
                         f"heard {h.age_s:.1f} s ago" + (f", model {m.model}" if m.model else ""))
    return "\n".join(lines)
