"""The Terraform-compatible S3 state server and its S3/R2 tools; runs without the forkstage CLI.

Rooms, each importing only the ones below it: ``s3`` (auth, request pipeline, operations) over
``http`` (connections, wire format) and ``store`` (durable versioned storage), which know nothing of
each other. At the top: the entry points and tools (``__main__``, ``serve``, ``server``,
``history``, ``bootstrap``) and what every room shares (``errors``, ``limits``, ``payload``,
``checksums``).
"""
