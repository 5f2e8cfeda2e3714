"""The S3 room: who may call (credentials, SigV4, policies), the request pipeline, the operations.

It sits on both rooms below: it reads requests through ``backend.http`` and keeps objects through
``backend.store``; every refusal is a ``backend.errors.S3Error``, rendered in ``respond``.
"""
