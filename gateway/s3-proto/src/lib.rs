//! S3 wire protocol (filled in by the s3-proto work).
