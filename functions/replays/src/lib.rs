//! The session-replays function (docs/api.md §3): browsers upload batches of recorded
//! events (`POST /session-replays/batch`, a user's access token), which are grouped into
//! replays and stored as gzipped chunks in the blob store; a project's admin lists replays,
//! reads one, pages through its chunks and reads their events. Browsers also upload their
//! analytics events (`POST /analytics/events/batch`, `events.rs`) into the analytics store.

shared::function_entries!(crate::FUNCTION);

mod admin;
mod batch;
mod events;

use shared::function::{Function, Route};

/// The session-replays function: uploads, and an admin's reads.
pub const FUNCTION: Function = Function {
    name: "replays",
    routes: &[
        Route::at("/api/v1/session-replays/batch").post(|c| Box::pin(batch::upload(c.ctx, c.req))),
        Route::at("/api/v1/analytics/events/batch").post(|c| Box::pin(events::upload(c.ctx, c.req))),
        Route::at("/api/v1/internal/session-replays").get(|c| Box::pin(admin::list(c.ctx, c.req))),
        Route::at("/api/v1/internal/session-replays/{id}").get(|c| Box::pin(admin::get(c.ctx, c.req, c.param("id")))),
        Route::at("/api/v1/internal/session-replays/{id}/chunks")
            .get(|c| Box::pin(admin::chunks(c.ctx, c.req, c.param("id")))),
        Route::at("/api/v1/internal/session-replays/{id}/chunks/{chunk_id}/events")
            .get(|c| Box::pin(admin::chunk_events(c.ctx, c.req, c.param("id"), c.param("chunk_id")))),
        Route::at("/api/v1/internal/session-replays/{id}/events")
            .get(|c| Box::pin(admin::events(c.ctx, c.req, c.param("id")))),
    ],
    crons: &[],
    scheduled: None,
    health: None,
};
