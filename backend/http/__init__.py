"""The HTTP room: connections, the accept loop, the wire format, request bodies, access-log lines.

It speaks HTTP/1.1 and knows nothing of S3 operations or storage: the S3 room above hands it a
handler and gets parsed heads, streamed bodies (``backend.payload``) and written responses back.
"""
