//! The primary store mirrored into the analytics store (docs/api.md §6.6): the sync step.
//!
//! Triggers log every write to a mirrored table in `sync_changes` (migration 0010); the log's
//! id is the sequence number, in commit order. One step takes each mapping in turn: it reads how
//! far the analytics store has it (the highest `last_synced_sequence_id` in
//! `_stack_sync_metadata`), takes the next changes in order, pushes each changed row's current
//! state, or a tombstone when the row is gone, stamped with the row's latest sequence number,
//! marks how far it got, and prunes the log up to the mark.
//!
//! The key decision: the mark lives in the analytics store and is written after the rows. A step
//! killed between the two repeats that batch next time, and the repeat is the same rows at the
//! same sequence numbers, which `ReplacingMergeTree` keeps once (`FINAL`); a step killed before
//! the insert loses nothing, the log still holds the changes. Two steps at once push the same
//! rows twice, and the higher sequence always wins. The step runs from a cron (every minute, on
//! every runtime) and after user writes where that is cheap ([`soon`]), never on the request
//! path; its state (pending changes, last success and failure) is on `/health` ([`health`]).

use serde_json::{json, Map, Value};

use crate::analytics::clickhouse::{ClickHouse, ClickHouseError, Query};
use crate::analytics::events::event_time;
use crate::context::Context;
use crate::store::ports::{SqlRow, SqlValue, Statement, StoreError};

/// One primary table mirrored into one analytics table.
struct Mapping {
    /// The mapping's name: the log's `mapping`, `_stack_sync_metadata.mapping_name`, and the
    /// table in `analytics_internal`.
    name: &'static str,
    /// The primary table, joined as `s`, and how its row matches a logged key (`c.row_key`).
    source: &'static str,
    key_match: &'static str,
    /// The mirrored columns of `s` as the analytics table names them.
    columns: &'static str,
    /// Which of them are millisecond timestamps (sent as `DateTime64` text).
    times: &'static [&'static str],
    /// Logs every row of the source again (an analytics store that lost rows gets them all).
    relog: &'static str,
    /// Columns computed from the others after reading.
    finish: fn(&mut Map<String, Value>),
}

fn nothing_to_finish(_: &mut Map<String, Value>) {}

const MAPPINGS: &[Mapping] = &[
    Mapping {
        name: "users",
        source: "users",
        key_match: "s.id = c.row_key",
        columns: "s.id AS id, s.display_name AS display_name, NULL AS profile_image_url, \
                  s.primary_email AS primary_email, s.primary_email_verified AS primary_email_verified, \
                  s.signed_up_at AS signed_up_at, '{}' AS client_metadata, '{}' AS client_read_only_metadata, \
                  '{}' AS server_metadata, s.is_anonymous AS is_anonymous, \
                  s.restricted_by_admin AS restricted_by_admin, NULL AS restricted_by_admin_reason, \
                  NULL AS restricted_by_admin_private_details",
        times: &["signed_up_at"],
        relog: "INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at) \
                SELECT 'users', tenancy_id, id, ?1 FROM users",
        finish: nothing_to_finish,
    },
    Mapping {
        name: "refresh_tokens",
        source: "refresh_tokens",
        key_match: "s.id = c.row_key",
        columns: "s.id AS id, s.user_id AS user_id, s.created_at AS created_at, s.last_active_at AS last_used_at, \
                  s.is_impersonation AS is_impersonation, s.expires_at AS expires_at",
        times: &["created_at", "last_used_at", "expires_at"],
        relog: "INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at) \
                SELECT 'refresh_tokens', tenancy_id, id, ?1 FROM refresh_tokens",
        finish: nothing_to_finish,
    },
    Mapping {
        name: "email_outboxes",
        source: "email_outbox",
        key_match: "s.id = c.row_key",
        columns: concat!(
            "s.id AS id, ",
            crate::email_status_sql!(),
            " AS status, 'PROGRAMMATIC_CALL' AS created_with, NULL AS email_draft_id, \
             NULL AS email_programmatic_call_template_id, NULL AS theme_id, s.is_high_priority AS is_high_priority, \
             s.is_transactional AS is_transactional, COALESCE(s.rendered_subject, s.override_subject) AS subject, \
             NULL AS notification_category_id, s.started_rendering_at AS started_rendering_at, \
             s.finished_rendering_at AS rendered_at, s.render_error_external_message AS render_error, \
             s.scheduled_at AS scheduled_at, s.created_at AS created_at, s.updated_at AS updated_at, \
             s.started_sending_at AS started_sending_at, s.send_server_error_external_message AS server_error, \
             s.can_have_delivery_info AS can_have_delivery_info, s.skipped_reason AS skipped_reason, \
             s.skipped_details AS skipped_details, s.send_retries AS send_retries, s.is_paused AS is_paused"
        ),
        times: &[
            "started_rendering_at",
            "rendered_at",
            "scheduled_at",
            "created_at",
            "updated_at",
            "started_sending_at",
        ],
        relog: "INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at) \
                SELECT 'email_outboxes', tenancy_id, id, ?1 FROM email_outbox",
        finish: |row| {
            let simple = row.get("status").and_then(Value::as_str).map(crate::email::simple_status);
            row.insert("simple_status".into(), simple.into());
        },
    },
    Mapping {
        name: "notification_preferences",
        source: "notification_preferences",
        key_match: "s.user_id = json_extract(c.row_key, '$[0]') AND s.category_id = json_extract(c.row_key, '$[1]')",
        columns: "s.user_id AS user_id, s.category_id AS notification_category_id, s.enabled AS enabled",
        times: &[],
        relog: "INSERT INTO sync_changes (mapping, tenancy_id, row_key, changed_at) \
                SELECT 'notification_preferences', tenancy_id, json_array(user_id, category_id), ?1 \
                FROM notification_preferences",
        finish: nothing_to_finish,
    },
];

/// The mirrored tables' names, in sync order.
pub fn mapping_names() -> impl Iterator<Item = &'static str> {
    MAPPINGS.iter().map(|m| m.name)
}

/// The most changes one batch takes (one read of the primary store, one insert).
const BATCH_CHANGES: i64 = 5_000;
/// The most changes one step takes per mapping; the next step goes on from there.
const STEP_CHANGES: i64 = 200_000;

/// `_stack_sync_metadata.tenancy_id` of the store-wide sequence (one log for every tenancy).
const WHOLE_STORE: &str = "00000000-0000-0000-0000-000000000000";

/// Why a step stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The primary store failed.
    #[error("primary store: {0}")]
    Store(#[from] StoreError),
    /// The analytics store failed.
    #[error("analytics store: {0}")]
    Analytics(#[from] ClickHouseError),
}

impl SyncError {
    /// What `/health` shows: the kind of failure, never a message that could carry a detail of
    /// the deployment.
    fn class(&self) -> String {
        match self {
            SyncError::Store(_) => "the primary store failed".into(),
            SyncError::Analytics(ClickHouseError::Transport(_)) => "the analytics store did not answer".into(),
            SyncError::Analytics(ClickHouseError::Server { name, .. }) => {
                format!("the analytics store refused: {name}")
            }
            SyncError::Analytics(ClickHouseError::Decode(_)) => {
                "the analytics store's answer was not understood".into()
            }
        }
    }
}

/// The cron's work: one sync step, when an analytics store is configured. Failures are logged
/// and recorded for `/health`; the next step retries.
pub async fn scheduled(ctx: &Context) {
    if let Err(e) = step(ctx).await {
        tracing::error!(error = %e, "the analytics sync step failed");
    }
}

/// A step after the response, for writes worth seeing in the analytics store at once (a user
/// created, changed or deleted through the API): the mirror then follows within a step instead
/// of at the next cron. Only where that is cheap: an analytics store is configured, the runtime
/// responds before background work ends (not components, which run it first), and no step is
/// already running in this thread (a write during one asks for one more pass). Never on the
/// refresh path: a refresh is a change too, and the cron takes those.
pub fn soon(ctx: &Context) {
    if ctx.config.clickhouse.is_none() || !ctx.background.after_response() {
        return;
    }
    if STEPPING.with(|stepping| stepping.replace(true)) {
        AGAIN.with(|again| again.set(true));
        return;
    }
    let owned = ctx.clone();
    ctx.background.spawn(Box::pin(async move {
        loop {
            AGAIN.with(|again| again.set(false));
            scheduled(&owned).await;
            if !AGAIN.with(std::cell::Cell::get) {
                break;
            }
        }
        STEPPING.with(|stepping| stepping.set(false));
    }));
}

thread_local! {
    /// Whether a step from [`soon`] runs on this thread.
    static STEPPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Whether a write asked for a step while one ran.
    static AGAIN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// One step over every mapping. Returns how many rows it pushed.
pub async fn step(ctx: &Context) -> Result<u64, SyncError> {
    let Some(config) = &ctx.config.clickhouse else { return Ok(0) };
    let client = config.admin_client();
    let mut pushed = 0;
    for mapping in MAPPINGS {
        match sync_mapping(ctx, &client, mapping).await {
            Ok(n) => pushed += n,
            Err(e) => {
                record_failure(ctx, mapping, &e).await;
                return Err(e);
            }
        }
    }
    Ok(pushed)
}

async fn sync_mapping(ctx: &Context, client: &ClickHouse, mapping: &Mapping) -> Result<u64, SyncError> {
    let mut through = synced_through(ctx, client, mapping.name).await?;
    resync_if_lost(ctx, mapping, through).await?;
    let read = batch_sql(mapping);
    let (mut pushed, mut taken) = (0, 0);
    while taken < STEP_CHANGES {
        let rows = ctx
            .store
            .query(&read, &[SqlValue::from(mapping.name), SqlValue::from(through), SqlValue::from(BATCH_CHANGES)])
            .await?;
        let Some(batch_through) = rows.iter().filter_map(|r| r.int("sync_sequence_id").ok()).max() else { break };
        let changes = rows.iter().map(|r| r.int("changes")).sum::<Result<i64, _>>()?;
        let documents = rows.iter().map(|r| to_document(mapping, r)).collect::<Result<Vec<_>, _>>()?;
        client.insert(ctx.http.as_ref(), &format!("analytics_internal.{}", mapping.name), &documents).await?;
        let mark = json!({ "tenancy_id": WHOLE_STORE, "mapping_name": mapping.name,
                           "last_synced_sequence_id": batch_through });
        client.insert(ctx.http.as_ref(), "analytics_internal._stack_sync_metadata", &[mark]).await?;
        prune(ctx, mapping, batch_through).await?;
        through = batch_through;
        pushed += documents.len() as u64;
        taken += changes;
    }
    if pushed == 0 {
        prune(ctx, mapping, through).await?; // records the success of an idle step
    }
    Ok(pushed)
}

/// The read of one batch: the next changes in order, each changed row once with its latest
/// sequence number, its tenancy, and its current state (all NULL when it is gone).
fn batch_sql(mapping: &Mapping) -> String {
    format!(
        "WITH batch AS (SELECT sequence_id, tenancy_id, row_key, deleted_row FROM sync_changes \
           WHERE mapping = ?1 AND sequence_id > ?2 ORDER BY sequence_id LIMIT ?3), \
         latest AS (SELECT max(sequence_id) AS sequence_id, count(*) AS changes FROM batch GROUP BY tenancy_id, row_key) \
         SELECT l.sequence_id AS sync_sequence_id, l.changes AS changes, c.deleted_row AS deleted_row, \
           t.project_id AS project_id, t.branch_id AS branch_id, s.tenancy_id IS NOT NULL AS present, {columns} \
         FROM latest l JOIN batch c ON c.sequence_id = l.sequence_id JOIN tenancies t ON t.id = c.tenancy_id \
         LEFT JOIN {source} s ON s.tenancy_id = c.tenancy_id AND {key_match}",
        columns = mapping.columns,
        source = mapping.source,
        key_match = mapping.key_match,
    )
}

/// One row as the analytics table takes it: the current state, or a tombstone carrying the key
/// and partition columns the delete kept (so it lands in the same part as the row it ends).
fn to_document(mapping: &Mapping, row: &SqlRow) -> Result<Value, StoreError> {
    let mut doc = Map::new();
    doc.insert("project_id".into(), row.text("project_id")?.into());
    doc.insert("branch_id".into(), row.text("branch_id")?.into());
    doc.insert("sync_sequence_id".into(), row.int("sync_sequence_id")?.into());
    let as_json = |name: &str, value: &SqlValue| match value {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(ms) if mapping.times.contains(&name) => event_time(*ms).into(),
        SqlValue::Integer(i) => (*i).into(),
        SqlValue::Text(t) => t.clone().into(),
    };
    if row.bool("present")? {
        doc.insert("sync_is_deleted".into(), 0.into());
        let skip = ["sync_sequence_id", "changes", "deleted_row", "project_id", "branch_id", "present"];
        for (name, value) in row.columns.iter().filter(|(n, _)| !skip.contains(&n.as_str())) {
            doc.insert(name.clone(), as_json(name, value));
        }
        (mapping.finish)(&mut doc);
    } else {
        doc.insert("sync_is_deleted".into(), 1.into());
        let kept = row.opt_text("deleted_row")?.unwrap_or_default();
        let kept: Map<String, Value> = serde_json::from_str(&kept).map_err(|_| {
            StoreError::Decode(format!("{}: a change of a missing row kept no tombstone", mapping.name))
        })?;
        for (name, value) in kept {
            let value = match value.as_i64() {
                Some(ms) => as_json(&name, &SqlValue::Integer(ms)),
                None => value,
            };
            doc.insert(name, value);
        }
    }
    Ok(Value::Object(doc))
}

/// How far the analytics store has `mapping`: the highest mark (0 when it has none). The
/// highest, not the latest: a slow step that finishes after a faster one cannot move it back.
async fn synced_through(ctx: &Context, client: &ClickHouse, mapping: &str) -> Result<i64, SyncError> {
    let query = Query::new(
        "SELECT max(last_synced_sequence_id) AS through FROM analytics_internal._stack_sync_metadata \
         WHERE tenancy_id = {tenancy:UUID} AND mapping_name = {mapping:String}",
    )
    .param("tenancy", WHOLE_STORE)
    .param("mapping", mapping);
    let rows = client.rows(ctx.http.as_ref(), &query).await?;
    // 64-bit integers come quoted in JSONEachRow.
    let through = rows.first().and_then(|r| r.get("through")).and_then(|v| match v {
        Value::String(s) => s.parse().ok(),
        other => other.as_i64(),
    });
    through.ok_or_else(|| ClickHouseError::Decode("no sync mark".into()).into())
}

/// When the log was pruned beyond what the analytics store has (it was replaced or emptied),
/// logs every row of the mapping again, so the store gets them all.
async fn resync_if_lost(ctx: &Context, mapping: &Mapping, through: i64) -> Result<(), SyncError> {
    let rows = ctx
        .store
        .query("SELECT pruned_through FROM analytics_sync_state WHERE mapping = ?", &[SqlValue::from(mapping.name)])
        .await?;
    let pruned = match rows.first() {
        Some(row) => row.int("pruned_through")?,
        None => 0,
    };
    if through >= pruned {
        return Ok(());
    }
    tracing::warn!(
        mapping = mapping.name,
        through,
        pruned,
        "the analytics store lost mirrored rows: syncing them all again"
    );
    ctx.store
        .batch(&[
            Statement::new(mapping.relog, vec![ctx.now().into()]),
            Statement::new(
                "UPDATE analytics_sync_state SET pruned_through = ?2 WHERE mapping = ?1",
                vec![mapping.name.into(), through.into()],
            ),
        ])
        .await?;
    Ok(())
}

/// Drops the changes up to `through` from the log and records the success.
async fn prune(ctx: &Context, mapping: &Mapping, through: i64) -> Result<(), StoreError> {
    ctx.store
        .batch(&[
            Statement::new(
                "DELETE FROM sync_changes WHERE mapping = ?1 AND sequence_id <= ?2",
                vec![mapping.name.into(), through.into()],
            ),
            Statement::new(
                "INSERT INTO analytics_sync_state (mapping, pruned_through, last_success_at, consecutive_failures) \
                 VALUES (?1, ?2, ?3, 0) ON CONFLICT (mapping) DO UPDATE SET \
                 pruned_through = max(pruned_through, excluded.pruned_through), \
                 last_success_at = excluded.last_success_at, consecutive_failures = 0",
                vec![mapping.name.into(), through.into(), ctx.now().into()],
            ),
        ])
        .await
        .map(|_| ())
}

async fn record_failure(ctx: &Context, mapping: &Mapping, error: &SyncError) {
    let recorded = ctx
        .store
        .execute(
            "INSERT INTO analytics_sync_state (mapping, last_failure_at, last_error, consecutive_failures) \
             VALUES (?1, ?2, ?3, 1) ON CONFLICT (mapping) DO UPDATE SET last_failure_at = excluded.last_failure_at, \
             last_error = excluded.last_error, consecutive_failures = consecutive_failures + 1",
            vec![mapping.name.into(), ctx.now().into(), error.class().into()],
        )
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not record the analytics sync's failure");
    }
}

/// The sync's state for `/health`: changes not yet in the analytics store and the age of the
/// oldest, the last success, and the last failure with how many in a row. `None` without an
/// analytics store.
pub async fn health(ctx: &Context) -> Option<Value> {
    ctx.config.clickhouse.as_ref()?;
    let sql = "SELECT (SELECT count(*) FROM sync_changes) AS pending, \
               (SELECT min(changed_at) FROM sync_changes) AS oldest, \
               (SELECT max(last_success_at) FROM analytics_sync_state) AS last_success_at, \
               (SELECT max(consecutive_failures) FROM analytics_sync_state) AS consecutive_failures, \
               (SELECT last_failure_at FROM analytics_sync_state ORDER BY last_failure_at DESC LIMIT 1) AS last_failure_at, \
               (SELECT last_error FROM analytics_sync_state ORDER BY last_failure_at DESC LIMIT 1) AS last_error";
    let state = async {
        let rows = ctx.store.query(sql, &[]).await?;
        let row = rows.first().ok_or_else(|| StoreError::Decode("no sync state".into()))?;
        let time = |name: &str| row.opt_int(name).map(|t| t.map(crate::email::iso_time));
        Ok::<_, StoreError>(json!({
            "pending_changes": row.int("pending")?,
            "lag_ms": row.opt_int("oldest")?.map_or(0, |oldest| (ctx.now() - oldest).max(0)),
            "last_success_at": time("last_success_at")?,
            "consecutive_failures": row.opt_int("consecutive_failures")?.unwrap_or(0),
            "last_failure_at": time("last_failure_at")?,
            "last_error": row.opt_text("last_error")?,
        }))
    };
    Some(state.await.unwrap_or_else(|e| json!({ "status": "unavailable", "error": e.to_string() })))
}
