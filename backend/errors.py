"""S3 error codes as one exception hierarchy.

Every refusal the server makes is raised as one of these and turned into S3's XML error document
in exactly one place (``backend.server``), so clients such as Terraform's Go SDK and boto3 see the
codes they already know how to handle.
"""

from __future__ import annotations


class S3Error(Exception):
    """Base of every S3-shaped error: ``code`` and ``status`` are what the client sees."""

    code = "InternalError"
    status = 500
    default_message = "We encountered an internal error. Please try again."

    def __init__(
        self, message: str | None = None, *, headers: dict[str, str] | None = None, **extra: str
    ) -> None:
        self.message = message or self.default_message
        self.extra = extra
        self.headers = headers or {}
        super().__init__(self.message)


class InternalError(S3Error):
    pass


class NotImplementedOp(S3Error):
    code = "NotImplemented"
    status = 501
    default_message = (
        "A header or query you provided implies functionality that is not implemented."
    )


# 400 Bad Request -----------------------------------------------------------------------------


class BadRequest(S3Error):
    status = 400
    code = "InvalidRequest"
    default_message = "The request is not valid."


class InvalidRequest(BadRequest):
    pass


class InvalidArgument(BadRequest):
    code = "InvalidArgument"
    default_message = "Invalid argument."


class InvalidBucketName(BadRequest):
    code = "InvalidBucketName"
    default_message = "The specified bucket is not valid."


class KeyTooLongError(BadRequest):
    code = "KeyTooLongError"
    default_message = "Your key is too long."


class MalformedXML(BadRequest):
    code = "MalformedXML"
    default_message = "The XML you provided was not well-formed or did not validate."


class EntityTooLarge(BadRequest):
    code = "EntityTooLarge"
    default_message = "Your proposed upload exceeds the maximum allowed object size."


class EntityTooSmall(BadRequest):
    code = "EntityTooSmall"
    default_message = "Your proposed upload is smaller than the minimum allowed object size."


class BadDigest(BadRequest):
    code = "BadDigest"
    default_message = "The checksum you specified did not match what we received."


class ContentSHA256Mismatch(BadRequest):
    code = "XAmzContentSHA256Mismatch"
    default_message = "The provided 'x-amz-content-sha256' header does not match what was computed."


class IncompleteBody(BadRequest):
    code = "IncompleteBody"
    default_message = "You did not provide the number of bytes specified by Content-Length."


class MissingContentLength(S3Error):
    code = "MissingContentLength"
    status = 411
    default_message = "You must provide the Content-Length HTTP header."


class InvalidPart(BadRequest):
    code = "InvalidPart"
    default_message = "One or more of the specified parts could not be found."


class InvalidPartOrder(BadRequest):
    code = "InvalidPartOrder"
    default_message = "The list of parts was not in ascending order."


class HeaderTooLarge(BadRequest):
    code = "RequestHeaderSectionTooLarge"
    default_message = "Your request header section exceeds the maximum allowed size."


class AuthorizationHeaderMalformed(BadRequest):
    code = "AuthorizationHeaderMalformed"
    default_message = "The authorization header is malformed."


class InvalidDigest(BadRequest):
    code = "InvalidDigest"
    default_message = "The checksum you specified is not valid."


# 403 Forbidden -------------------------------------------------------------------------------


class AccessDenied(S3Error):
    code = "AccessDenied"
    status = 403
    default_message = "Access Denied"


class SignatureDoesNotMatch(AccessDenied):
    code = "SignatureDoesNotMatch"
    default_message = (
        "The request signature we calculated does not match the signature you provided."
    )


class InvalidAccessKeyId(AccessDenied):
    code = "InvalidAccessKeyId"
    default_message = "The AWS access key Id you provided does not exist in our records."


class RequestTimeTooSkewed(AccessDenied):
    code = "RequestTimeTooSkewed"
    default_message = "The difference between the request time and the server's time is too large."


# 404 / 409 / 412 / 416 -----------------------------------------------------------------------


class NoSuchBucket(S3Error):
    code = "NoSuchBucket"
    status = 404
    default_message = "The specified bucket does not exist"


class NoSuchKey(S3Error):
    code = "NoSuchKey"
    status = 404
    default_message = "The specified key does not exist."


class NoSuchVersion(S3Error):
    code = "NoSuchVersion"
    status = 404
    default_message = "The specified version does not exist."


class NoSuchUpload(S3Error):
    code = "NoSuchUpload"
    status = 404
    default_message = "The specified multipart upload does not exist."


class MethodNotAllowed(S3Error):
    code = "MethodNotAllowed"
    status = 405
    default_message = "The specified method is not allowed against this resource."


class BucketAlreadyOwnedByYou(S3Error):
    code = "BucketAlreadyOwnedByYou"
    status = 409
    default_message = "Your previous request to create the named bucket succeeded and you own it."


class BucketNotEmpty(S3Error):
    code = "BucketNotEmpty"
    status = 409
    default_message = "The bucket you tried to delete is not empty."


class ConditionalRequestConflict(S3Error):
    code = "ConditionalRequestConflict"
    status = 409
    default_message = "A conflicting operation occurred."


class PreconditionFailed(S3Error):
    code = "PreconditionFailed"
    status = 412
    default_message = "At least one of the preconditions you specified did not hold."


class InvalidRange(S3Error):
    code = "InvalidRange"
    status = 416
    default_message = "The requested range is not satisfiable"


# Limits --------------------------------------------------------------------------------------


class RequestTimeout(BadRequest):
    code = "RequestTimeout"
    default_message = (
        "Your socket connection to the server was not read from or written to within the "
        "timeout period."
    )


class QuotaExceeded(S3Error):
    code = "QuotaExceeded"
    status = 403
    default_message = "This credential's storage quota is used up: delete keys or old versions."


class SlowDown(S3Error):
    code = "SlowDown"
    status = 503
    default_message = "The server is at its connection limit: retry shortly."


class InsufficientStorage(S3Error):
    code = "InsufficientStorage"
    status = 507
    default_message = (
        "The state server's disk is below its free-space reserve: delete objects, abort "
        "uploads, or free disk space."
    )
