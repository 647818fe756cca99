//! Subscription documents (in progress).
