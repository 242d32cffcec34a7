"""The call engine: how one call to a task is served. Read in this order:

- ``plan.py``       the call plan: candidates and every limit, resolved once and frozen
- ``call.py``       the call's mutable state (attempts, skips, errors) and the errors that end it
- ``admission.py``  breakers and budget reservations over the state store; a failing store never fails a call
- ``limits.py``     one attempt within its timeout, first-token and stall limits and its share of the deadline
- ``loop.py``       the attempt loop and its three drivers (complete, embed, stream); the policy table decides
- ``observe.py``    logs, running totals, and the hook where tracing attaches

``taskmodels.service.ModelService`` is the facade applications call.
"""
