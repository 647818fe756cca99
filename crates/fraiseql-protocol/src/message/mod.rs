//! Client messages of both protocols, parsed strictly from WebSocket text frames.
//!
//! - [`client`]: the [`ClientMessage`] type and [`parse_client_message`];
//! - [`payload`]: the payloads messages carry, [`JsonObject`] and [`SubscribePayload`];
//! - [`invalid`]: why a message is refused, [`InvalidMessage`].
//!
//! The frames the server sends are not here: they are encoded by the crate's `frame` module.

mod client;
mod invalid;
mod payload;

pub use client::{parse_client_message, ClientMessage};
pub use invalid::InvalidMessage;
pub use payload::{JsonObject, SubscribePayload};

#[cfg(test)]
mod tests;
