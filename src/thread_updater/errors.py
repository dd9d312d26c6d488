"""Exceptions that decide where a record ends up, and the map of where every failure goes.

Every update ends in exactly one place. The tree below is the whole decision, top to bottom::

    record / event
    ├── invalid (envelope, JSON, schema, version)  → dead letter, category "validation" (no HTTP call)
    ├── ConfigurationError (environment, secret    → not attempted: SQS records go back to the queue,
    │   unreadable or invalid, credentials refused    an EventBridge invocation fails; ConfigurationErrors
    │   for every request after a refresh)            metric and one ERROR line naming the problem
    │   └── AccountLimitError (402, 412)           → the same: account-level, the line says what to fix
    ├── CredentialsUnavailable (no time left to    → handed back, not a configuration error
    │   read the secret; secret_store.py)
    └── Modify Thread call (classification.py)
        ├── 2xx                                    → applied
        ├── permanent 4xx, a 403 for this thread   → dead letter, category "rejected"
        │   only (others accepted the credentials)
        ├── contention (409, an active run)        → retried with longer backoff, then handed back
        └── transient (429, 5xx, timeouts, …)      → retried inside the invocation, then handed back
                                                      (SQS batchItemFailures / EventBridge raises)
    DeadLetterError (the DLQ refused the letter)   → the record is handed back instead of lost
    (a DLQ that does not exist is a ConfigurationError: DLQ_URL is wrong, not the record)
    any other exception while processing a record  → that record is handed back, the batch goes on

A handed-back SQS record returns after its visibility timeout and ends in the DLQ as-is once the
queue's ``maxReceiveCount`` is reached; an EventBridge event is retried by Lambda, then sent to the
on-failure destination.
"""

__all__ = ["AccountLimitError", "ConfigurationError", "DeadLetterError", "StateUnavailableError"]


class ConfigurationError(Exception):
    """The function cannot work as configured (environment, secret, credentials).

    Never dead-lettered: the updates are fine, the deployment is not, so every
    unfinished record goes back to the queue (SQS) or the invocation fails (EventBridge).
    Messages name the problem, never a secret value.
    """


class AccountLimitError(ConfigurationError):
    """Portkey or the provider refuses the account, not the update: 412 (Portkey budget or usage
    limit exhausted) or 402 (the provider's billing). Temporary and fixed by an operator, so it is
    handled like a configuration error: records go back to the queue, never to the DLQ."""


class DeadLetterError(Exception):
    """Writing to the dead-letter queue failed; the record must be retried instead."""


class StateUnavailableError(Exception):
    """The state table could not be read or written just now (throttling, network, out of time).

    Transient: the record goes back to the queue; it is never dead-lettered for this.
    """
