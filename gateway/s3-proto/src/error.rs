//! S3 error codes and the XML error document.
//!
//! Every fallible function in this crate returns [`S3Error`], so the gateway
//! can turn any failure into the exact status code and XML body an S3 client
//! expects without a translation table of its own.

use crate::xml::escape::escape_text;

/// The S3 error codes this gateway can produce.
///
/// Names follow AWS spelling exactly because the `<Code>` element is matched
/// by SDKs (e.g. retry logic keys on `SlowDown`, `RequestTimeTooSkewed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum S3ErrorCode {
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooSmall,
    EntityTooLarge,
    IllegalLocationConstraintException,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidLocationConstraint,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    KeyTooLongError,
    MalformedXML,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NotImplemented,
    /// 304: the gateway must send no body for this one.
    NotModified,
    PreconditionFailed,
    RequestHeaderSectionTooLarge,
    RequestTimeTooSkewed,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    XAmzContentSHA256Mismatch,
}

impl S3ErrorCode {
    /// The HTTP status AWS uses for this code.
    pub fn status(self) -> u16 {
        use S3ErrorCode::*;
        match self {
            NotModified => 304,
            AccessDenied | InvalidAccessKeyId | RequestTimeTooSkewed | SignatureDoesNotMatch => 403,
            NoSuchBucket | NoSuchKey | NoSuchUpload => 404,
            MethodNotAllowed => 405,
            BucketAlreadyExists | BucketAlreadyOwnedByYou | BucketNotEmpty => 409,
            MissingContentLength => 411,
            PreconditionFailed => 412,
            InvalidRange => 416,
            InternalError => 500,
            NotImplemented => 501,
            ServiceUnavailable | SlowDown => 503,
            AuthorizationHeaderMalformed
            | AuthorizationQueryParametersError
            | BadDigest
            | EntityTooSmall
            | EntityTooLarge
            | IllegalLocationConstraintException
            | IncompleteBody
            | InvalidArgument
            | InvalidBucketName
            | InvalidDigest
            | InvalidLocationConstraint
            | InvalidPart
            | InvalidPartOrder
            | InvalidRequest
            | KeyTooLongError
            | MalformedXML
            | MetadataTooLarge
            | RequestHeaderSectionTooLarge
            | XAmzContentSHA256Mismatch => 400,
        }
    }

    /// The `<Code>` string, identical to the variant name.
    pub fn as_str(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "AccessDenied",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            BadDigest => "BadDigest",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketNotEmpty => "BucketNotEmpty",
            EntityTooSmall => "EntityTooSmall",
            EntityTooLarge => "EntityTooLarge",
            IllegalLocationConstraintException => "IllegalLocationConstraintException",
            IncompleteBody => "IncompleteBody",
            InternalError => "InternalError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidArgument => "InvalidArgument",
            InvalidBucketName => "InvalidBucketName",
            InvalidDigest => "InvalidDigest",
            InvalidLocationConstraint => "InvalidLocationConstraint",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidRange => "InvalidRange",
            InvalidRequest => "InvalidRequest",
            KeyTooLongError => "KeyTooLongError",
            MalformedXML => "MalformedXML",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            NoSuchBucket => "NoSuchBucket",
            NoSuchKey => "NoSuchKey",
            NoSuchUpload => "NoSuchUpload",
            NotImplemented => "NotImplemented",
            NotModified => "NotModified",
            PreconditionFailed => "PreconditionFailed",
            RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            ServiceUnavailable => "ServiceUnavailable",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            SlowDown => "SlowDown",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
        }
    }
}

impl std::fmt::Display for S3ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An S3 error: code, human message and optionally the resource concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct S3Error {
    pub code: S3ErrorCode,
    pub message: String,
    pub resource: Option<String>,
}

impl S3Error {
    /// An error without a resource.
    pub fn new(code: S3ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            resource: None,
        }
    }

    /// Attach the resource (e.g. `/bucket/key`) shown in `<Resource>`.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Shorthand for `self.code.status()`.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The XML error document. `<Resource>` is omitted when unknown.
    /// A 304 must be sent without a body; callers should not call this for it.
    pub fn to_xml(&self, request_id: &str) -> String {
        let mut out = String::with_capacity(160 + self.message.len());
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>");
        out.push_str(self.code.as_str());
        out.push_str("</Code><Message>");
        out.push_str(&escape_text(&self.message));
        out.push_str("</Message>");
        if let Some(resource) = &self.resource {
            out.push_str("<Resource>");
            out.push_str(&escape_text(resource));
            out.push_str("</Resource>");
        }
        out.push_str("<RequestId>");
        out.push_str(&escape_text(request_id));
        out.push_str("</RequestId></Error>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_aws() {
        assert_eq!(S3ErrorCode::NoSuchKey.status(), 404);
        assert_eq!(S3ErrorCode::SignatureDoesNotMatch.status(), 403);
        assert_eq!(S3ErrorCode::InvalidRange.status(), 416);
        assert_eq!(S3ErrorCode::NotModified.status(), 304);
        assert_eq!(S3ErrorCode::MissingContentLength.status(), 411);
        assert_eq!(S3ErrorCode::SlowDown.status(), 503);
        assert_eq!(S3ErrorCode::BucketNotEmpty.status(), 409);
        assert_eq!(S3ErrorCode::NotImplemented.status(), 501);
    }

    #[test]
    fn xml_is_escaped() {
        let e = S3Error::new(S3ErrorCode::NoSuchKey, "a <b> & \"c\"").with_resource("/b/k&");
        let xml = e.to_xml("req-1");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>\
             <Message>a &lt;b&gt; &amp; &quot;c&quot;</Message><Resource>/b/k&amp;</Resource>\
             <RequestId>req-1</RequestId></Error>"
        );
        assert_eq!(e.to_string(), "NoSuchKey: a <b> & \"c\"");
    }

    #[test]
    fn xml_without_resource() {
        let xml = S3Error::new(S3ErrorCode::AccessDenied, "no").to_xml("r");
        assert!(!xml.contains("<Resource>"));
        assert!(xml.contains("<Code>AccessDenied</Code>"));
    }
}
