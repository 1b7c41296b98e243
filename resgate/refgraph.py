"""The reference graph of one connection's subscriptions: what stays alive, what the client holds.

Subscriptions reference each other (``Subscription.refs``, ``parents``),
cycles included. When a reference or a direct subscription goes, ``collect``
walks the region it may have freed: it disposes the subscriptions nothing
keeps alive any more and marks unsent those the client no longer holds. The
connection calls it and forgets what it disposed.
"""

from __future__ import annotations

from typing import Callable

from resgate.subscription import STATE_SENT, Subscription


def collect(root: Subscription) -> list[Subscription]:
    """Dispose ``root`` and what only it kept, unsend what the client no longer holds; the disposed.

    The region is ``root`` and what it references, directly or not, short
    of resources the client holds directly. Within it, a subscription
    stays alive if something outside the region references it, or a
    direct subscription still waits for its response (or something alive
    inside references it); the client still holds it if a held parent
    outside the region, or a held one inside, references it. Cycles are
    no obstacle: both are reachability questions.

    Holding is the client's view, as a RES client keeps it: it holds what
    it got the response of a direct subscription for, and what the copies
    it holds reference. So a pending direct subscription keeps a resource
    alive without making it held, and a held parent makes a child held
    only if its copy (``Subscription.references``) references it: a new
    reference of an event still waiting is not the client's yet, and one
    the waiting event drops still is.
    """
    if root.held_directly:
        return []
    region: dict[Subscription, None] = {}
    stack = [root]
    while stack:
        sub = stack.pop()
        if sub in region:
            continue
        region[sub] = None
        for child in sub.refs.values():
            if not child.held_directly and child not in region:
                stack.append(child)

    alive = _reachable(
        [sub for sub in region if sub.direct > 0 or any(parent not in region for parent in sub.parents)],
        region, lambda sub: True,
    )
    held = _reachable(
        [sub for sub in region
         if sub.state == STATE_SENT and any(parent not in region and parent.state == STATE_SENT
                                            and parent.references(sub) for parent in sub.parents)],
        region, lambda sub: sub in alive and sub.state == STATE_SENT, copies=True,
    )
    disposed: list[Subscription] = []
    for sub in region:
        if sub not in alive:
            sub.dispose()
            disposed.append(sub)
        elif sub.state == STATE_SENT and sub not in held:
            sub.unsend()
    return disposed


def _reachable(starts: list[Subscription], region: dict[Subscription, None],
               passes: Callable[[Subscription], bool], *, copies: bool = False) -> set[Subscription]:
    """What ``starts`` reach through references inside ``region``, via subscriptions that ``passes``.

    ``copies``: only through the references of the client's copies, not all ``refs``.
    """
    found: set[Subscription] = set()
    stack = [sub for sub in starts if passes(sub)]
    while stack:
        sub = stack.pop()
        if sub in found:
            continue
        found.add(sub)
        children = sub.copy_refs() if copies else sub.refs.values()
        for child in children:
            if child in region and child not in found and passes(child):
                stack.append(child)
    return found
