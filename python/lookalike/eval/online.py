"""Online metrics: rates over a time window of shoppers' feedback events.

Definitions (the denominators are what a shopper could act on):
- click-through rate = clicks / impressions
- add-to-cart rate = add-to-cart events / impressions
- purchase-through rate = purchases / impressions
- abandonment = searches with an impression but no click / searches with an impression
A rate whose denominator is 0 is 0. A click in the window whose impression fell
before it still counts as a click (windows cut sessions; a long window makes
that rare).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class OnlineMetrics:
    searches: int
    impressions: int
    clicks: int
    add_to_carts: int
    purchases: int
    searches_with_click: int
    click_through_rate: float
    add_to_cart_rate: float
    purchase_through_rate: float
    abandonment_rate: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def online_metrics(searches: int, impressions: int, clicks: int, add_to_carts: int, purchases: int,
                   searches_with_click: int) -> OnlineMetrics:
    """The rates of a window from its counts."""
    if searches_with_click > searches:
        raise ValueError(f"{searches_with_click} searches with a click, but only {searches} searches")
    return OnlineMetrics(searches, impressions, clicks, add_to_carts, purchases, searches_with_click,
                         click_through_rate=_rate(clicks, impressions),
                         add_to_cart_rate=_rate(add_to_carts, impressions),
                         purchase_through_rate=_rate(purchases, impressions),
                         abandonment_rate=_rate(searches - searches_with_click, searches))


def parse_time_ms(text: str, now_s: float) -> int:
    """A window bound as ms since the epoch: ISO 8601 ("2026-11-24T10:00", UTC
    unless it names a zone), a span before now ("30m", "24h", "7d"), or "now"."""
    text = text.strip()
    if text == "now":
        return int(now_s * 1000)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) > 1 and text[-1] in units:
        try:
            return int((now_s - float(text[:-1]) * units[text[-1]]) * 1000)
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 (2026-11-24T10:00), a span before now "
                         "(30m, 24h, 7d) or 'now'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def format_online(m: OnlineMetrics) -> str:
    return "\n".join([
        f"searches with impressions  {m.searches}",
        f"impressions                {m.impressions}",
        f"clicks                     {m.clicks}",
        f"add to cart                {m.add_to_carts}",
        f"purchases                  {m.purchases}",
        f"click-through rate         {m.click_through_rate:.4f}  (clicks / impressions)",
        f"add-to-cart rate           {m.add_to_cart_rate:.4f}  (add to cart / impressions)",
        f"purchase-through rate      {m.purchase_through_rate:.4f}  (purchases / impressions)",
        f"abandonment                {m.abandonment_rate:.4f}  (searches without a click / searches)"])
