"""The dead-letter queue tool: ``python -m ops.dlq inspect|replay`` (``make dlq ARGS="…"``).

``inspect`` reads the DLQ without deleting anything; ``replay`` sends selected dead letters back where
they came from and deletes each one only after its copy was accepted by a route that leads to the
function: at worst a duplicate, never a loss.

Modules, one concern each:

- ``letters``: what a DLQ message is (the function's envelope, a redriven raw body, an on-failure
  destination record, an EventBridge delivery failure) and where its copy would go;
- ``scan``: reading the queue completely while holding every letter invisible, or saying why not;
- ``inspect``: the grouped table;
- ``routes``: whether a queue or event bus can take a copy so that it reaches the function;
- ``send``: sending one copy (version attribute, FIFO ids, the event's original time);
- ``replay``: one replay run (select, order, send-then-delete, audit lines, summary);
- ``supersede``: the seam for "a newer version of this thread was already applied";
- ``aws_errors``: every AWS error as one line that says what to check;
- ``terminal``: the progress bar and Ctrl-C handling;
- ``cli``: the command line.
"""
