"""The call engine: how one call to a task is served. Read in this order:

- ``plan.py``       the call plan: candidates and every limit, resolved once and frozen
- ``call.py``       the call's mutable state and each attempt's (``Try``), and the errors that end a call
- ``admission.py``  breakers, budget and rate-limit reservations; a failing state store never fails a call
- ``limits.py``     one attempt within its timeout and its share of the deadline
- ``streams.py``    a stream attempt within its first-token, stall and deadline limits
- ``pools.py``      the routes of a model: itself, or its deployments in the order its strategy gives
- ``loop.py``       the attempt loop and its three drivers (complete, embed, stream)
- ``outcome.py``    after an attempt: the answer priced and recorded, or the rule table applied to the failure
- ``hedge.py``      the drivers of a task with hedged requests: more than one attempt in flight
- ``observe.py``    logs, running totals, and the hook where tracing attaches
- ``health.py``     what ``ModelService.health()`` reports per model and deployment

``taskmodels.service.ModelService`` is the facade applications call.
"""
