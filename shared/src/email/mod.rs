//! The email outbox (§5): rows are enqueued by the API ([`outbox`]), then one queue pass at a
//! time claims, renders, queues and sends them ([`queue`], [`render`], [`send`]), within each
//! tenancy's capacity ([`capacity`]), and fails the ones stuck in sending. [`server`] says which
//! mail server a project's config names; [`notifications`] holds the categories users may
//! unsubscribe from.

mod capacity;
mod deliverability;
pub mod notifications;
mod outbox;
mod queue;
mod render;
mod send;
pub mod server;

pub use capacity::{
    active_boost, delivery_stats, start_boost, tenancy_capacity, Boost, Capacity, DeliveryStats, BOOST_DURATION_MS,
    BOOST_MULTIPLIER,
};
pub use outbox::{enqueue, enqueue_many, is_email, iso_time, simple_status, NewEmail, Recipient, STATUS_SQL};
pub use queue::{
    claim_sends, fail_emails_stuck_in_sending, prepare_outbox, Claim, PrepareReport, QueueSettings, DEFAULT_CLAIM_ROWS,
    MAX_CLAIM_ROWS, RENDER_BATCH, STUCK_EMAIL_TIMEOUT_MS, STUCK_MESSAGE,
};
pub use send::{record_send, record_sent, Outcome, MAX_SEND_ATTEMPTS};
