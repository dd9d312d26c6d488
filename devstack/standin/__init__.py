"""The parts of the local Portkey stand-in, one concept each.

* :mod:`devstack.standin.store`: the thread objects and what Portkey / OpenAI would store or refuse;
* :mod:`devstack.standin.faults`: scripted replies (status, body, held, slow, dropped) per thread;
* :mod:`devstack.standin.server`: the HTTP plumbing (sockets, request bodies, writing answers);
* :mod:`devstack.standin.token_bucket`: a requests-per-second limit (429 + ``Retry-After`` beyond).

:class:`devstack.portkey_standin.PortkeyStandIn` ties them together and is the public entry point.
"""
