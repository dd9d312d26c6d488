"""Soak: thousands of updates through moto SQS, the real handler and a Portkey stand-in that fails.

``python -m bench.soak --updates 20000`` (a bounded variant runs in CI as ``tests/tooling/test_soak.py``).

What runs, all on this machine:

* moto in server mode (SQS, Secrets Manager): a source queue with a redrive policy to a DLQ;
* :class:`FaultyStandIn` (``bench.soak.faults``), the project's Portkey stand-in with faults
  injected into ~30 % of the requests (seeded, and decided per update attempt so a run is
  reproducible whatever the scheduling): 429 with and without ``Retry-After``, 500/502/503, read
  timeouts, connections dropped before and in the middle of the answer, answers just under the
  read timeout; and a fixed set of threads that always answer 404 (a thread gone upstream);
* several worker **processes**, each one "warm Lambda container": the real ``lambda_handler``
  driven by :class:`devstack.poller.SqsPoller` (receive up to 10, invoke, delete what succeeded,
  leave ``batchItemFailures`` to reappear after the visibility timeout). Processes, not threads,
  because a container runs one invocation at a time (the handler's batch processor is a module
  singleton), exactly like Lambda's event source mapping scaling out over containers;
* a producer that keeps the queue about ``queue_depth`` deep with ``SendMessageBatch`` (moto's
  receive and send cost grows with the queue's depth, a real queue's does not).

Then it settles the books (``bench.soak.books``): every message id must be in exactly one place,
applied, superseded or in the DLQ. ``--ordering`` runs the ordering variant instead: explicit
versions per thread, shuffled and duplicated, late writes; then every thread's stored state must be
its newest applied update per field (``bench.soak.convergence``); ``--no-state-table`` runs either
without ``THREAD_STATE_TABLE``.

The modules, in the order a run uses them: ``config`` (sizes, timeouts, fault weights), ``faults``
(the failing stand-in), ``traffic`` (the planned updates and the producer), ``worker`` (one warm
container), ``run`` (one run end to end), ``books`` (settling and the figures), ``convergence``
(the ordering check), ``cli``.
"""

from bench.soak.books import SoakReport, write_figures
from bench.soak.cli import main
from bench.soak.config import FAULT_WEIGHTS, SoakConfig
from bench.soak.faults import FaultyStandIn
from bench.soak.run import run_soak

__all__ = ["FAULT_WEIGHTS", "FaultyStandIn", "SoakConfig", "SoakReport", "main", "run_soak", "write_figures"]
