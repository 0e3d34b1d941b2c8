//! Skeleton: being written.
