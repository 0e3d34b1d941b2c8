//! The single error type every parser and validator in this crate returns.
//!
//! Swift answers client mistakes with a status code and a short plain-text
//! body (or, when the middleware gave no message, a tiny HTML page). Keeping
//! the status next to the message lets the gateway turn any error into the
//! exact response a Swift client expects without a lookup table of its own.

use thiserror::Error;

/// A protocol-level rejection: the HTTP status Swift would answer and the
/// human-readable reason it would put in the body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{status} {message}")]
pub struct SwiftError {
    /// HTTP status code (400, 401, 403, 404, 409, 411, 412, 413, 416, 422...).
    pub status: u16,
    /// Plain-text explanation; empty means "use Swift's default page".
    pub message: String,
}

impl SwiftError {
    /// Builds an error with an arbitrary status.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request is malformed (bad header, bad manifest, bad name).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 401: missing/invalid credentials, including bad or expired TempURLs.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }

    /// 403: authenticated but the ACLs do not grant the operation.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    /// 404: the account, container or object does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 406: no listing format acceptable to the client.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, message)
    }

    /// 409: e.g. deleting a non-empty container.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }

    /// 411: a PUT without Content-Length nor chunked transfer encoding.
    pub fn length_required(message: impl Into<String>) -> Self {
        Self::new(411, message)
    }

    /// 412: a precondition (listing limit, If-Match...) failed.
    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(412, message)
    }

    /// 413: the object, manifest or metadata exceeds a constraint.
    pub fn entity_too_large(message: impl Into<String>) -> Self {
        Self::new(413, message)
    }

    /// 416: none of the requested byte ranges overlaps the object.
    pub fn range_not_satisfiable(message: impl Into<String>) -> Self {
        Self::new(416, message)
    }

    /// 422: the body's checksum does not match the supplied ETag.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, message)
    }

    /// The standard reason phrase for [`Self::status`].
    pub fn reason(&self) -> &'static str {
        reason_phrase(self.status)
    }

    /// The response body Swift would send: the explicit message when there is
    /// one, otherwise Swift's generic HTML page for the status.
    pub fn body(&self) -> String {
        if self.message.is_empty() {
            format!(
                "<html><h1>{}</h1><p>{}</p></html>",
                self.reason(),
                default_explanation(self.status)
            )
        } else {
            self.message.clone()
        }
    }
}

/// Reason phrases for the statuses this crate produces (and a few more).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        416 => "Requested Range Not Satisfiable",
        422 => "Unprocessable Entity",
        _ => "Error",
    }
}

fn default_explanation(status: u16) -> &'static str {
    match status {
        400 => {
            "The server could not comply with the request since it is either malformed or otherwise incorrect."
        }
        401 => {
            "This server could not verify that you are authorized to access the document you requested."
        }
        403 => "Access was denied to this resource.",
        404 => "The resource could not be found.",
        406 => "The resource is not available in a format acceptable to your browser.",
        409 => "There was a conflict when trying to complete your request.",
        411 => "Content-Length header required.",
        412 => "A precondition for this request was not met.",
        413 => "The body of your request was too large for this server.",
        416 => "The Range requested is not available.",
        422 => "Unable to process the contained instructions",
        _ => "An error occurred.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_message_is_the_body() {
        let e = SwiftError::precondition_failed("Maximum limit is 10000");
        assert_eq!(e.status, 412);
        assert_eq!(e.body(), "Maximum limit is 10000");
        assert_eq!(e.to_string(), "412 Maximum limit is 10000");
    }

    #[test]
    fn empty_message_uses_default_page() {
        let e = SwiftError::not_found("");
        assert!(e.body().contains("<h1>Not Found</h1>"));
    }

    #[test]
    fn constructors_carry_status() {
        assert_eq!(SwiftError::bad_request("x").status, 400);
        assert_eq!(SwiftError::unauthorized("x").status, 401);
        assert_eq!(SwiftError::forbidden("x").status, 403);
        assert_eq!(SwiftError::conflict("x").status, 409);
        assert_eq!(SwiftError::length_required("x").status, 411);
        assert_eq!(SwiftError::entity_too_large("x").status, 413);
        assert_eq!(SwiftError::range_not_satisfiable("x").status, 416);
        assert_eq!(SwiftError::unprocessable("x").status, 422);
        assert_eq!(SwiftError::not_acceptable("x").reason(), "Not Acceptable");
    }
}
