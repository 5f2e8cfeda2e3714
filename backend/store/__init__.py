"""The storage room: durable, versioned objects in SQLite rows and files, quotas, retention.

It knows neither HTTP nor the S3 operations: ``store.Store`` is its facade, and what it is handed
is a ``backend.payload.Payload``; refusals are ``backend.errors`` S3 errors like everywhere else.
"""
