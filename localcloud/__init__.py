"""Local stand-ins for the cloud parts forkstage drives (PostgreSQL first).

They exist so tests and the local demo run against real servers on 127.0.0.1 with no account.
"""
