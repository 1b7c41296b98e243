"""The resource cache: one copy of every resource any client holds.

``cache`` holds the cache itself (ResourceCache and its entries);
``resources`` the resource model its entries and the connections share
(Model, Collection, ResourceEvent); ``throttle``, ``pattern`` and ``faults``
the request throttle, system.reset's resource patterns and the log of
services' faults. Nothing here knows WebSockets, HTTP or NATS.
"""
