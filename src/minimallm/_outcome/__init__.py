"""What an attempt ended as (:mod:`.attempts`), decided in one table (:mod:`.classify`:
error type, retryable, overload and flow-control kind in one row) for an exception or
an answer (:mod:`.reply`); what a server said went wrong (:mod:`.explain`), and the API
key kept out of what a server sent (:mod:`.redact`)."""
