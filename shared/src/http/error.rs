//! The one error type of every endpoint, and the KnownError catalogue.
//!
//! `ApiError` has the three shapes upstream answers with (docs/api.md §0.3): a KnownError
//! (JSON envelope `{code, details?, error}` plus the `X-Stack-Known-Error` header), a plain
//! status error (text body), and an internal error (500, details hidden in production).
//! The codes, statuses and messages below are compared byte for byte by SDKs: change them
//! only together with the contract.

use serde_json::{json, Value};

use crate::http::{Response, JSON_CONTENT_TYPE};

/// A KnownError: a stable `code`, an HTTP status, a human message and optional details.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownError {
    /// The stable code (`SCHEMA_ERROR`, ...), also sent as `x-stack-known-error`.
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The human message.
    pub message: String,
    /// Structured details, where the error has them.
    pub details: Option<Value>,
}

/// Everything a handler can fail with.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// A KnownError in the contract's envelope.
    Known(KnownError),
    /// Upstream's bare `StatusError`: a status and a text body.
    Status {
        /// The HTTP status.
        status: u16,
        /// The text body.
        message: String,
    },
    /// A raw OAuth-library error body (`{"error", "error_description"}`).
    OAuth {
        /// The HTTP status.
        status: u16,
        /// The OAuth error code (`invalid_grant`, ...).
        error: &'static str,
        /// The `error_description`.
        description: String,
    },
    /// A bug or an infrastructure failure. The text is logged, and shown only outside production.
    Internal(String),
}

/// A store failure is an internal error: its text is logged, never shown in production. With
/// this, handlers use `?` on store calls.
impl From<crate::store::ports::StoreError> for ApiError {
    fn from(e: crate::store::ports::StoreError) -> Self {
        ApiError::internal(e.to_string())
    }
}

impl From<KnownError> for ApiError {
    fn from(e: KnownError) -> Self {
        ApiError::Known(e)
    }
}

impl ApiError {
    /// A bare status with a text body.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        ApiError::Status { status, message: message.into() }
    }

    /// A 500 whose message is shown outside production only.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::Internal(message.into())
    }

    /// Renders the error as a response. `show_internal` is false in production.
    pub fn into_response(self, show_internal: bool) -> Response {
        match self {
            ApiError::Known(e) => e.into_response(),
            ApiError::Status { status, message } => crate::http::text(status, &message),
            ApiError::OAuth { status, error, description } => {
                crate::http::json_with_status(status, &json!({ "error": error, "error_description": description }))
            }
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                let body = if show_internal {
                    format!("Internal error: {message}")
                } else {
                    "Something went wrong. Please make sure the data you entered is correct.".to_string()
                };
                crate::http::text(500, &body)
            }
        }
    }
}

impl KnownError {
    fn new(code: &'static str, status: u16, message: impl Into<String>, details: Option<Value>) -> Self {
        KnownError { code, status, message: message.into(), details }
    }

    /// The response this error answers with.
    pub fn into_response(self) -> Response {
        // Upstream pretty-prints with two spaces and orders the keys code, details, error.
        let mut body = serde_json::Map::new();
        body.insert("code".into(), Value::String(self.code.into()));
        if let Some(details) = self.details {
            body.insert("details".into(), details);
        }
        body.insert("error".into(), Value::String(self.message));
        let bytes = serde_json::to_vec_pretty(&Value::Object(body)).expect("JSON value serialises");
        http::Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, JSON_CONTENT_TYPE)
            .header("x-stack-known-error", self.code)
            .body(bytes)
            .expect("static response parts are valid")
    }

    // --- request parsing -------------------------------------------------------------------

    /// `SCHEMA_ERROR` (400).
    pub fn schema_error(message: String) -> Self {
        let details = json!({ "message": message });
        Self::new("SCHEMA_ERROR", 400, message, Some(details))
    }

    /// `BODY_PARSING_ERROR` (400).
    pub fn body_parsing_error(message: &str) -> Self {
        Self::new("BODY_PARSING_ERROR", 400, message, None)
    }

    // --- project authentication (docs/api.md §0.2) --------------------------------------------

    /// `PROJECT_KEY_WITHOUT_ACCESS_TYPE` (400).
    pub fn project_key_without_access_type() -> Self {
        Self::new(
            "PROJECT_KEY_WITHOUT_ACCESS_TYPE",
            400,
            "Either an API key or an admin access token was provided, but the x-stack-access-type header is missing. Set it to 'client', 'server', or 'admin' as appropriate.",
            None,
        )
    }

    /// `INVALID_ACCESS_TYPE` (400).
    pub fn invalid_access_type(access_type: &str) -> Self {
        Self::new(
            "INVALID_ACCESS_TYPE",
            400,
            format!("The x-stack-access-type header must be 'client', 'server', or 'admin', but was '{access_type}'."),
            Some(json!({ "accessType": access_type })),
        )
    }

    /// `ACCESS_TYPE_WITHOUT_PROJECT_ID` (400).
    pub fn access_type_without_project_id(access_type: &str) -> Self {
        Self::new(
            "ACCESS_TYPE_WITHOUT_PROJECT_ID",
            400,
            format!("The x-stack-access-type header was '{access_type}', but the x-stack-project-id header was not provided.\n\nFor more information, see the docs on REST API authentication: https://docs.stack-auth.com/rest-api/overview#authentication"),
            Some(json!({ "request_type": access_type })),
        )
    }

    /// `ACCESS_TYPE_REQUIRED` (400).
    pub fn access_type_required() -> Self {
        Self::new(
            "ACCESS_TYPE_REQUIRED",
            400,
            "You must specify an access level for this Stack project. Make sure project API keys are provided (eg. x-stack-publishable-client-key) and you set the x-stack-access-type header to 'client', 'server', or 'admin'.\n\nFor more information, see the docs on REST API authentication: https://docs.stack-auth.com/rest-api/overview#authentication",
            None,
        )
    }

    /// `INSUFFICIENT_ACCESS_TYPE` (401).
    pub fn insufficient_access_type(actual: &str, allowed: &[&str]) -> Self {
        let list = allowed.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(" or ");
        Self::new(
            "INSUFFICIENT_ACCESS_TYPE",
            401,
            format!("The x-stack-access-type header must be {list}, but was '{actual}'."),
            Some(json!({ "actual_access_type": actual, "allowed_access_types": allowed })),
        )
    }

    /// `INVALID_PUBLISHABLE_CLIENT_KEY` (401).
    pub fn invalid_publishable_client_key(project_id: &str) -> Self {
        Self::new(
            "INVALID_PUBLISHABLE_CLIENT_KEY",
            401,
            format!(
                "The publishable key is not valid for the project {}. Does the project and/or the key exist?",
                json!(project_id)
            ),
            Some(json!({ "project_id": project_id })),
        )
    }

    /// `PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT` (401).
    pub fn publishable_client_key_required_for_project(project_id: &str) -> Self {
        Self::new(
            "PUBLISHABLE_CLIENT_KEY_REQUIRED_FOR_PROJECT",
            401,
            "Publishable client keys are required for this project. Create one in Project Keys, or disable this requirement there to allow keyless client access.",
            Some(json!({ "project_id": project_id })),
        )
    }

    /// `SERVER_AUTHENTICATION_REQUIRED` (401).
    pub fn server_authentication_required() -> Self {
        Self::new("SERVER_AUTHENTICATION_REQUIRED", 401, "The secret server key must be provided.", None)
    }

    /// `INVALID_SECRET_SERVER_KEY` (401).
    pub fn invalid_secret_server_key(project_id: &str) -> Self {
        Self::new(
            "INVALID_SECRET_SERVER_KEY",
            401,
            format!(
                "The secret server key is not valid for the project {}. Does the project and/or the key exist?",
                json!(project_id)
            ),
            Some(json!({ "project_id": project_id })),
        )
    }

    /// `ADMIN_AUTHENTICATION_REQUIRED` (401).
    pub fn admin_authentication_required() -> Self {
        Self::new("ADMIN_AUTHENTICATION_REQUIRED", 401, "The super secret admin key must be provided.", None)
    }

    /// `INVALID_SUPER_SECRET_ADMIN_KEY` (401).
    pub fn invalid_super_secret_admin_key(project_id: &str) -> Self {
        Self::new(
            "INVALID_SUPER_SECRET_ADMIN_KEY",
            401,
            format!(
                "The super secret admin key is not valid for the project {}. Does the project and/or the key exist?",
                json!(project_id)
            ),
            Some(json!({ "project_id": project_id })),
        )
    }

    /// `CURRENT_PROJECT_NOT_FOUND` (400).
    pub fn current_project_not_found(project_id: &str) -> Self {
        Self::new(
            "CURRENT_PROJECT_NOT_FOUND",
            400,
            format!("The current project with ID {project_id} was not found. Please check the value of the x-stack-project-id header."),
            Some(json!({ "project_id": project_id })),
        )
    }

    /// `BRANCH_DOES_NOT_EXIST` (400).
    pub fn branch_does_not_exist(branch_id: &str) -> Self {
        Self::new(
            "BRANCH_DOES_NOT_EXIST",
            400,
            format!("The branch with ID {branch_id} does not exist."),
            Some(json!({ "branch_id": branch_id })),
        )
    }

    // --- access tokens ---------------------------------------------------------------------

    /// `UNPARSABLE_ACCESS_TOKEN` (401).
    pub fn unparsable_access_token() -> Self {
        Self::new("UNPARSABLE_ACCESS_TOKEN", 401, "Access token is not parsable.", None)
    }

    /// `expired_at_millis` is null when unknown. `extra` adds upstream's
    /// `{project_id, user_id, refresh_token_id}` details where it has them.
    pub fn access_token_expired(
        expired_at_millis: Option<i64>,
        extra: Option<(String, String, Option<String>)>,
    ) -> Self {
        let suffix = expired_at_millis
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| format!(" (The access token expired at {}.)", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")))
            .unwrap_or_default();
        let mut details = json!({ "expired_at_millis": expired_at_millis });
        let (project_id, user_id, refresh_token_id) = match extra {
            Some((p, u, r)) => (Value::from(p), Value::from(u), r.map_or(Value::Null, Value::from)),
            None => (Value::Null, Value::Null, Value::Null),
        };
        details["project_id"] = project_id;
        details["user_id"] = user_id;
        details["refresh_token_id"] = refresh_token_id;
        Self::new(
            "ACCESS_TOKEN_EXPIRED",
            401,
            format!("Access token has expired. Please refresh it and try again.{suffix}"),
            Some(details),
        )
    }

    /// `INVALID_PROJECT_FOR_ACCESS_TOKEN` (401).
    pub fn invalid_project_for_access_token(expected: &str, actual: &str) -> Self {
        Self::new(
            "INVALID_PROJECT_FOR_ACCESS_TOKEN",
            401,
            format!(
                "Access token not valid for this project. Expected project ID {}, but the token is for project ID {}.",
                json!(expected),
                json!(actual)
            ),
            Some(json!({ "expected_project_id": expected, "actual_project_id": actual })),
        )
    }

    /// `ANONYMOUS_AUTHENTICATION_NOT_ALLOWED` (401).
    pub fn anonymous_authentication_not_allowed() -> Self {
        Self::new(
            "ANONYMOUS_AUTHENTICATION_NOT_ALLOWED",
            401,
            "X-Stack-Access-Token is for an anonymous user, but anonymous users are not enabled. Set the X-Stack-Allow-Anonymous-User header of this request to 'true' to allow anonymous users.",
            None,
        )
    }

    /// `RESTRICTED_USER_NOT_ALLOWED` (403).
    pub fn restricted_user_not_allowed(reason: &Value) -> Self {
        let kind = reason.get("type").and_then(Value::as_str).unwrap_or("unknown");
        Self::new(
            "RESTRICTED_USER_NOT_ALLOWED",
            403,
            format!("The user in the access token is in restricted state. Reason: {kind}. Please pass the X-Stack-Allow-Restricted-User header if this is intended."),
            Some(json!({ "restricted_reason": reason })),
        )
    }

    /// `USER_AUTHENTICATION_REQUIRED` (401).
    pub fn user_authentication_required() -> Self {
        Self::new("USER_AUTHENTICATION_REQUIRED", 401, "User authentication required for this endpoint.", None)
    }

    /// `CANNOT_GET_OWN_USER_WITHOUT_USER` (400).
    pub fn cannot_get_own_user_without_user() -> Self {
        Self::new(
            "CANNOT_GET_OWN_USER_WITHOUT_USER",
            400,
            "You have specified 'me' as a userId, but did not provide authentication for a user.",
            None,
        )
    }

    // --- sessions and users ----------------------------------------------------------------

    /// `REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED` (401).
    pub fn refresh_token_not_found_or_expired() -> Self {
        Self::new(
            "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED",
            401,
            "Refresh token not found for this project, or the session has expired/been revoked.",
            None,
        )
    }

    /// `CANNOT_DELETE_CURRENT_SESSION` (400).
    pub fn cannot_delete_current_session() -> Self {
        Self::new("CANNOT_DELETE_CURRENT_SESSION", 400, "Cannot delete the current session.", None)
    }

    /// `USER_ID_DOES_NOT_EXIST` (400).
    pub fn user_id_does_not_exist(user_id: &str) -> Self {
        Self::new(
            "USER_ID_DOES_NOT_EXIST",
            400,
            format!("The given user with the ID {user_id} does not exist."),
            Some(json!({ "user_id": user_id })),
        )
    }

    /// `USER_NOT_FOUND` (404).
    pub fn user_not_found() -> Self {
        Self::new("USER_NOT_FOUND", 404, "User not found.", None)
    }

    // --- password sign-in (docs/api.md §1.11) -----------------------------------------------

    /// `PASSWORD_AUTHENTICATION_NOT_ENABLED` (400).
    pub fn password_authentication_not_enabled() -> Self {
        Self::new(
            "PASSWORD_AUTHENTICATION_NOT_ENABLED",
            400,
            "Password authentication is not enabled for this project.",
            None,
        )
    }

    /// `SIGN_UP_NOT_ENABLED` (400).
    pub fn sign_up_not_enabled() -> Self {
        Self::new(
            "SIGN_UP_NOT_ENABLED",
            400,
            "Creation of new accounts is not enabled for this project. Please ask the project owner to enable it.",
            None,
        )
    }

    /// `USER_EMAIL_ALREADY_EXISTS` (409).
    pub fn user_email_already_exists(email: &str) -> Self {
        Self::new("USER_EMAIL_ALREADY_EXISTS", 409, format!("A user with email \"{email}\" already exists."), None)
    }

    /// `EMAIL_PASSWORD_MISMATCH` (400): the same answer for an unknown email and a wrong password.
    pub fn email_password_mismatch() -> Self {
        Self::new("EMAIL_PASSWORD_MISMATCH", 400, "Wrong e-mail or password.", None)
    }

    /// `PASSWORD_CONFIRMATION_MISMATCH` (400): the old password given to a change is wrong.
    pub fn password_confirmation_mismatch() -> Self {
        Self::new("PASSWORD_CONFIRMATION_MISMATCH", 400, "Passwords do not match.", None)
    }

    /// `PASSWORD_TOO_SHORT` (400).
    pub fn password_too_short(min_length: usize) -> Self {
        Self::new(
            "PASSWORD_TOO_SHORT",
            400,
            format!("Password too short. Minimum length is {min_length}."),
            Some(json!({ "min_length": min_length })),
        )
    }

    /// `PASSWORD_TOO_LONG` (400).
    pub fn password_too_long(max_length: usize) -> Self {
        Self::new(
            "PASSWORD_TOO_LONG",
            400,
            format!("Password too long. Maximum length is {max_length}."),
            Some(json!({ "max_length": max_length })),
        )
    }

    /// `OTP_SIGN_IN_NOT_ENABLED` (400).
    pub fn otp_sign_in_not_enabled() -> Self {
        Self::new("OTP_SIGN_IN_NOT_ENABLED", 400, "One-time password sign-in is not enabled for this project.", None)
    }

    /// `VERIFICATION_CODE_NOT_FOUND` (404).
    pub fn verification_code_not_found() -> Self {
        Self::new("VERIFICATION_CODE_NOT_FOUND", 404, "The verification code does not exist for this project.", None)
    }

    /// `VERIFICATION_CODE_EXPIRED` (400).
    pub fn verification_code_expired() -> Self {
        Self::new("VERIFICATION_CODE_EXPIRED", 400, "The verification code has expired.", None)
    }

    /// `VERIFICATION_CODE_ALREADY_USED` (409).
    pub fn verification_code_already_used() -> Self {
        Self::new("VERIFICATION_CODE_ALREADY_USED", 409, "The verification link has already been used.", None)
    }

    /// `TOO_MANY_SIGN_IN_ATTEMPTS` (429, ours: upstream has no limit): `retry_after_s` from now.
    pub fn too_many_sign_in_attempts(retry_after_s: i64) -> Self {
        Self::new(
            "TOO_MANY_SIGN_IN_ATTEMPTS",
            429,
            format!("Too many sign-in attempts. Try again in {retry_after_s} seconds."),
            Some(json!({ "retry_after_seconds": retry_after_s })),
        )
    }

    /// `INVALID_OAUTH_CLIENT_ID_OR_SECRET` (400).
    pub fn invalid_oauth_client_id_or_secret(client_id: Option<&str>) -> Self {
        Self::new(
            "INVALID_OAUTH_CLIENT_ID_OR_SECRET",
            400,
            "The OAuth client ID or secret is invalid. The client ID must be equal to the project ID (potentially with a hash and a branch ID), and the client secret must be a publishable client key.",
            Some(json!({ "client_id": client_id })),
        )
    }

    /// `INVALID_AUTHORIZATION_CODE` (400).
    pub fn invalid_authorization_code() -> Self {
        Self::new("INVALID_AUTHORIZATION_CODE", 400, "The given authorization code is invalid.", None)
    }

    /// `EXPECTED_INTERNAL_PROJECT` (401).
    pub fn expected_internal_project() -> Self {
        Self::new("EXPECTED_INTERNAL_PROJECT", 401, "The project ID is expected to be internal.", None)
    }

    /// A failed analytics query; `message` is already what users may see.
    pub fn analytics_query_error(message: &str) -> Self {
        Self::new("ANALYTICS_QUERY_ERROR", 400, message, Some(json!({ "error": message })))
    }

    /// `ITEM_NOT_FOUND` (404).
    pub fn item_not_found(item_id: &str) -> Self {
        Self::new(
            "ITEM_NOT_FOUND",
            404,
            format!("Item with ID \"{item_id}\" not found."),
            Some(json!({ "item_id": item_id })),
        )
    }

    /// `OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED` (400).
    pub fn oauth_provider_not_found_or_not_enabled() -> Self {
        Self::new(
            "OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED",
            400,
            "The OAuth provider is not found or not enabled.",
            None,
        )
    }

    /// `OAUTH_EXTRA_SCOPE_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS` (400).
    pub fn oauth_extra_scope_not_available_with_shared_oauth_keys() -> Self {
        Self::new(
            "OAUTH_EXTRA_SCOPE_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS",
            400,
            "Extra scopes are not available with shared OAuth keys. Please add your own OAuth keys on the Stack dashboard to use extra scopes.",
            None,
        )
    }

    /// `OAUTH_ACCESS_TOKEN_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS` (400).
    pub fn oauth_access_token_not_available_with_shared_oauth_keys() -> Self {
        Self::new(
            "OAUTH_ACCESS_TOKEN_NOT_AVAILABLE_WITH_SHARED_OAUTH_KEYS",
            400,
            "Access tokens are not available with shared OAuth keys. Please add your own OAuth keys on the Stack dashboard to use access tokens.",
            None,
        )
    }

    /// `OAUTH_CONNECTION_NOT_CONNECTED_TO_USER` (400).
    pub fn oauth_connection_not_connected_to_user() -> Self {
        Self::new(
            "OAUTH_CONNECTION_NOT_CONNECTED_TO_USER",
            400,
            "The OAuth connection is not connected to this user.",
            None,
        )
    }

    /// `OAUTH_CONNECTION_ALREADY_CONNECTED_TO_ANOTHER_USER` (400).
    pub fn oauth_connection_already_connected_to_another_user() -> Self {
        Self::new(
            "OAUTH_CONNECTION_ALREADY_CONNECTED_TO_ANOTHER_USER",
            400,
            "The OAuth connection is already connected to another user.",
            None,
        )
    }

    /// `USER_ALREADY_CONNECTED_TO_ANOTHER_OAUTH_CONNECTION` (400).
    pub fn user_already_connected_to_another_oauth_connection() -> Self {
        Self::new(
            "USER_ALREADY_CONNECTED_TO_ANOTHER_OAUTH_CONNECTION",
            400,
            "The user is already connected to another OAuth account. Did you maybe selected the wrong account?",
            None,
        )
    }

    /// `OAUTH_CONNECTION_DOES_NOT_HAVE_REQUIRED_SCOPE` (400).
    pub fn oauth_connection_does_not_have_required_scope() -> Self {
        Self::new(
            "OAUTH_CONNECTION_DOES_NOT_HAVE_REQUIRED_SCOPE",
            400,
            "The OAuth connection does not have the required scope.",
            None,
        )
    }

    /// `CONTACT_CHANNEL_ALREADY_USED_FOR_AUTH_BY_SOMEONE_ELSE` (409).
    pub fn contact_channel_already_used_for_auth_by_someone_else(email: &str) -> Self {
        Self::new(
            "CONTACT_CHANNEL_ALREADY_USED_FOR_AUTH_BY_SOMEONE_ELSE",
            409,
            format!("The email ({email}) is already used for authentication by another account."),
            Some(json!({ "type": "email", "contact_channel_value": email })),
        )
    }

    /// `OAUTH_PROVIDER_ACCESS_DENIED` (400): the user (or the provider) refused the sign-in.
    pub fn oauth_provider_access_denied() -> Self {
        Self::new("OAUTH_PROVIDER_ACCESS_DENIED", 400, "The OAuth provider denied access to the user.", None)
    }

    /// `OAUTH_PROVIDER_TEMPORARILY_UNAVAILABLE` (503).
    pub fn oauth_provider_temporarily_unavailable() -> Self {
        Self::new(
            "OAUTH_PROVIDER_TEMPORARILY_UNAVAILABLE",
            503,
            "The OAuth provider is temporarily unavailable. Please try signing in again.",
            None,
        )
    }

    /// `OUTER_OAUTH_TIMEOUT` (408): the sign-in took longer than its ten minutes.
    pub fn outer_oauth_timeout() -> Self {
        Self::new("OUTER_OAUTH_TIMEOUT", 408, "The OAuth flow has timed out. Please sign in again.", None)
    }

    /// `REDIRECT_URL_NOT_WHITELISTED` (400).
    pub fn redirect_url_not_whitelisted() -> Self {
        Self::new(
            "REDIRECT_URL_NOT_WHITELISTED",
            400,
            "Redirect URL not whitelisted. Did you forget to add this domain to the trusted domains list on the Stack Auth dashboard?",
            None,
        )
    }

    /// `ANALYTICS_NOT_ENABLED` (400).
    pub fn analytics_not_enabled() -> Self {
        Self::new("ANALYTICS_NOT_ENABLED", 400, "Analytics is not enabled for this project.", None)
    }

    /// `EMAIL_NOT_EDITABLE` (400).
    pub fn email_not_editable(email_id: &str, status: &str) -> Self {
        Self::new(
            "EMAIL_NOT_EDITABLE",
            400,
            format!(
                "Email with ID {email_id} is not editable: its status is {status}. Only emails in the statuses PAUSED, \
                 PREPARING, RENDERING, RENDER_ERROR, SCHEDULED, QUEUED and SERVER_ERROR can be edited."
            ),
            Some(json!({ "email_id": email_id, "status": status })),
        )
    }

    /// `REQUIRES_CUSTOM_EMAIL_SERVER` (400).
    pub fn requires_custom_email_server() -> Self {
        Self::new(
            "REQUIRES_CUSTOM_EMAIL_SERVER",
            400,
            "This action requires a custom SMTP server. Please edit your email server configuration and try again.",
            None,
        )
    }

    /// `expires_at`: ISO 8601.
    pub fn email_capacity_boost_already_active(expires_at: &str) -> Self {
        Self::new(
            "EMAIL_CAPACITY_BOOST_ALREADY_ACTIVE",
            409,
            "An email capacity boost is already active for this project.",
            Some(json!({ "expires_at": expires_at })),
        )
    }

    /// `INVALID_SCOPE` (400).
    pub fn invalid_scope(scope: &str) -> Self {
        Self::new("INVALID_SCOPE", 400, format!("The scope \"{scope}\" is not a valid OAuth scope for Stack."), None)
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_error_envelope_matches_upstream() {
        let res = KnownError::refresh_token_not_found_or_expired().into_response();
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["x-stack-known-error"], "REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED");
        assert_eq!(res.headers()["content-type"], JSON_CONTENT_TYPE);
        let body = String::from_utf8(res.into_body()).unwrap();
        assert_eq!(
            body,
            "{\n  \"code\": \"REFRESH_TOKEN_NOT_FOUND_OR_EXPIRED\",\n  \"error\": \"Refresh token not found for this project, or the session has expired/been revoked.\"\n}"
        );
    }

    #[test]
    fn details_come_between_code_and_error() {
        let res = KnownError::insufficient_access_type("client", &["server", "admin"]).into_response();
        let body = String::from_utf8(res.into_body()).unwrap();
        let code = body.find("\"code\"").unwrap();
        let details = body.find("\"details\"").unwrap();
        let error = body.find("\"error\"").unwrap();
        assert!(code < details && details < error, "{body}");
        assert!(body.contains("The x-stack-access-type header must be 'server' or 'admin', but was 'client'."));
    }

    #[test]
    fn internal_errors_hide_text_in_production() {
        let res = ApiError::internal("db exploded at /secret/path").into_response(false);
        assert_eq!(res.status(), 500);
        assert!(!String::from_utf8(res.into_body()).unwrap().contains("secret"));
    }
}
