//! The audit trail of deleted rows (upstream's `DeletedRow`): statements that copy rows into
//! `deleted_rows` before they are deleted. Sessions are deleted from two places (a sign-out or
//! expiry, and a user's deletion), so the statements live here, below both.

/// The statement that copies sessions into `deleted_rows` (upstream's DeletedRow) before they
/// are deleted, for the rows matching `$condition`. `?1` is the deletion time. It inserts
/// nothing for rows that are already gone.
macro_rules! audit_sessions_where {
    ($condition:literal) => {
        concat!(
            "INSERT INTO deleted_rows (tenancy_id, table_name, primary_key, data, deleted_at) ",
            "SELECT tenancy_id, 'ProjectUserRefreshToken', json_object('tenancyId', tenancy_id, 'id', id), ",
            "json_object('tenancyId', tenancy_id, 'id', id, 'projectUserId', user_id, 'refreshTokenHash', token_hash, ",
            "'createdAt', created_at, 'updatedAt', updated_at, 'lastActiveAt', last_active_at, ",
            "'lastActiveAtIpInfo', json(last_active_ip_info), 'expiresAt', expires_at, 'isImpersonation', is_impersonation), ?1 ",
            "FROM refresh_tokens WHERE ",
            $condition
        )
    };
}

/// Params: deleted_at, tenancy_id, session id.
pub const AUDIT_SESSION_SQL: &str = audit_sessions_where!("tenancy_id = ?2 AND id = ?3");
/// Params: deleted_at, tenancy_id, user id.
pub const AUDIT_USER_SESSIONS_SQL: &str = audit_sessions_where!("tenancy_id = ?2 AND user_id = ?3");
/// Params: now (also the deletion time).
pub const AUDIT_EXPIRED_SESSIONS_SQL: &str = audit_sessions_where!("expires_at IS NOT NULL AND expires_at <= ?1");
