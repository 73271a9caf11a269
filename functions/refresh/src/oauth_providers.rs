//! OAuth providers as data (docs/api.md §2.3): each standard provider is a row of URLs, default
//! scopes, how the token endpoint authenticates the client, and where its user info keeps the
//! account id, email and profile (JSON pointers). One generic OpenID Connect type (`oidc`)
//! takes its endpoints from the environment config. No code per provider.
//!
//! Also the two calls to a provider: the code exchange (and refresh) at its token endpoint,
//! and the user info. A provider's answers are bounded in size and read only as JSON.

use serde_json::Value;

use shared::context::SHAREABLE_OAUTH_PROVIDERS;
use shared::http::error::{ApiError, ApiResult, KnownError};
use shared::store::ports::ResponseLimit;
use shared::Context;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the id and secret.
    Basic,
    /// `client_secret_post`: both in the form body.
    Post,
}

/// Where the user's claims come from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Claims {
    /// The user-info endpoint's JSON, read with these pointers.
    UserInfo(Pointers),
    /// The ID token's payload, read with these pointers (Apple: no user-info endpoint). Not
    /// checked against the provider's keys: it came straight from the provider's token endpoint
    /// over TLS, which OpenID Connect Core §3.1.3.7 allows in place of the signature.
    IdToken(Pointers),
}

/// JSON pointers to the claims in the provider's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pointers {
    account_id: &'static str,
    email: Option<&'static str>,
    email_verified: Option<&'static str>,
    display_name: Option<&'static str>,
    profile_image_url: Option<&'static str>,
}

/// OpenID Connect's standard claims.
const OIDC_CLAIMS: Pointers = Pointers {
    account_id: "/sub",
    email: Some("/email"),
    email_verified: Some("/email_verified"),
    display_name: Some("/name"),
    profile_image_url: Some("/picture"),
};

/// A provider type.
#[derive(Debug)]
struct Kind {
    id: &'static str,
    authorization_url: &'static str,
    token_url: &'static str,
    /// The user-info endpoint (empty for [`Claims::IdToken`]).
    user_info_url: &'static str,
    default_scopes: &'static str,
    client_auth: ClientAuth,
    claims: Claims,
    /// Twitch's API wants the client id on every call.
    client_id_header: bool,
}

const fn kind(
    id: &'static str,
    urls: [&'static str; 3],
    default_scopes: &'static str,
    client_auth: ClientAuth,
    claims: Claims,
) -> Kind {
    let [authorization_url, token_url, user_info_url] = urls;
    Kind {
        id,
        authorization_url,
        token_url,
        user_info_url,
        default_scopes,
        client_auth,
        claims,
        client_id_header: false,
    }
}

const fn pointers(
    account_id: &'static str,
    email: Option<&'static str>,
    email_verified: Option<&'static str>,
    display_name: &'static str,
    profile_image_url: Option<&'static str>,
) -> Pointers {
    Pointers { account_id, email, email_verified, display_name: Some(display_name), profile_image_url }
}

/// The standard providers, and `oidc` (its URLs from the config: `authorizationEndpoint`,
/// `tokenEndpoint`, `userinfoEndpoint`). `{tenant}` is Microsoft's tenant id.
const KINDS: &[Kind] = &[
    kind(
        "google",
        [
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            "https://openidconnect.googleapis.com/v1/userinfo",
        ],
        "openid email profile",
        ClientAuth::Post,
        Claims::UserInfo(OIDC_CLAIMS),
    ),
    kind(
        "github",
        [
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
            "https://api.github.com/user",
        ],
        "user:email",
        ClientAuth::Post,
        // GitHub does not say whether the public email is verified: it is taken as unverified.
        Claims::UserInfo(pointers("/id", Some("/email"), None, "/name", Some("/avatar_url"))),
    ),
    kind(
        "microsoft",
        [
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
            "https://graph.microsoft.com/oidc/userinfo",
        ],
        "openid profile email offline_access User.Read",
        ClientAuth::Post,
        Claims::UserInfo(pointers("/sub", Some("/email"), None, "/name", None)),
    ),
    kind(
        "spotify",
        [
            "https://accounts.spotify.com/authorize",
            "https://accounts.spotify.com/api/token",
            "https://api.spotify.com/v1/me",
        ],
        "user-read-email user-read-private",
        ClientAuth::Post,
        Claims::UserInfo(pointers("/id", Some("/email"), None, "/display_name", Some("/images/0/url"))),
    ),
    kind(
        "facebook",
        [
            "https://www.facebook.com/v18.0/dialog/oauth",
            "https://graph.facebook.com/v18.0/oauth/access_token",
            "https://graph.facebook.com/v18.0/me?fields=id,name,email,picture",
        ],
        "public_profile email",
        ClientAuth::Post,
        Claims::UserInfo(pointers("/id", Some("/email"), None, "/name", Some("/picture/data/url"))),
    ),
    kind(
        "discord",
        [
            "https://discord.com/oauth2/authorize",
            "https://discord.com/api/oauth2/token",
            "https://discord.com/api/users/@me",
        ],
        "identify email",
        ClientAuth::Post,
        Claims::UserInfo(pointers("/id", Some("/email"), Some("/verified"), "/global_name", None)),
    ),
    kind(
        "gitlab",
        ["https://gitlab.com/oauth/authorize", "https://gitlab.com/oauth/token", "https://gitlab.com/api/v4/user"],
        "read_user",
        ClientAuth::Post,
        Claims::UserInfo(pointers("/id", Some("/email"), None, "/name", Some("/avatar_url"))),
    ),
    kind(
        "bitbucket",
        [
            "https://bitbucket.org/site/oauth2/authorize",
            "https://bitbucket.org/site/oauth2/access_token",
            "https://api.bitbucket.org/2.0/user",
        ],
        "account email",
        ClientAuth::Basic,
        Claims::UserInfo(pointers("/uuid", None, None, "/display_name", Some("/links/avatar/href"))),
    ),
    kind(
        "linkedin",
        [
            "https://www.linkedin.com/oauth/v2/authorization",
            "https://www.linkedin.com/oauth/v2/accessToken",
            "https://api.linkedin.com/v2/userinfo",
        ],
        "openid profile email",
        ClientAuth::Post,
        Claims::UserInfo(OIDC_CLAIMS),
    ),
    kind(
        "apple",
        ["https://appleid.apple.com/auth/authorize", "https://appleid.apple.com/auth/token", ""],
        "name email",
        ClientAuth::Post,
        Claims::IdToken(pointers("/sub", Some("/email"), Some("/email_verified"), "/name", None)),
    ),
    kind(
        "x",
        [
            "https://twitter.com/i/oauth2/authorize",
            "https://api.twitter.com/2/oauth2/token",
            "https://api.twitter.com/2/users/me?user.fields=profile_image_url",
        ],
        "users.read offline.access tweet.read",
        ClientAuth::Basic,
        Claims::UserInfo(pointers("/data/id", None, None, "/data/name", Some("/data/profile_image_url"))),
    ),
    Kind {
        client_id_header: true,
        ..kind(
            "twitch",
            [
                "https://id.twitch.tv/oauth2/authorize",
                "https://id.twitch.tv/oauth2/token",
                "https://api.twitch.tv/helix/users",
            ],
            "user:read:email",
            ClientAuth::Post,
            Claims::UserInfo(pointers(
                "/data/0/id",
                Some("/data/0/email"),
                None,
                "/data/0/display_name",
                Some("/data/0/profile_image_url"),
            )),
        )
    },
    kind("oidc", ["", "", ""], "openid email profile", ClientAuth::Basic, Claims::UserInfo(OIDC_CLAIMS)),
];

/// A provider as the tenancy's rendered config has it, its URLs filled in.
pub struct Provider {
    /// The provider's id in the config (`auth.oauth.providers.<id>`).
    pub id: String,
    kind: &'static Kind,
    /// Stack's own OAuth app (`isShared`, the default for the shareable ones).
    pub shared: bool,
    authorization_url: String,
    token_url: String,
    user_info_url: String,
}

/// The enabled provider `provider_id` of the tenancy's rendered `config`, or
/// OAUTH_PROVIDER_NOT_FOUND_OR_NOT_ENABLED.
pub fn provider(ctx: &Context, config: &Value, provider_id: &str) -> ApiResult<Provider> {
    let entry = &config["auth"]["oauth"]["providers"][provider_id];
    let not_found = || ApiError::from(KnownError::oauth_provider_not_found_or_not_enabled());
    if !entry.is_object() {
        return Err(not_found());
    }
    let kind_id = entry["type"].as_str().unwrap_or(provider_id);
    let kind = KINDS.iter().find(|k| k.id == kind_id).ok_or_else(not_found)?;
    let shared = SHAREABLE_OAUTH_PROVIDERS.contains(&kind.id) && entry["isShared"].as_bool().unwrap_or(true);
    let tenant = entry["microsoftTenantId"].as_str().unwrap_or("common");
    let url = |fixed: &str, key: &str| -> ApiResult<String> {
        if kind.id != "oidc" {
            return Ok(fixed.replace("{tenant}", tenant));
        }
        endpoint(ctx, entry, key)
    };
    Ok(Provider {
        id: provider_id.to_string(),
        kind,
        shared,
        authorization_url: url(kind.authorization_url, "authorizationEndpoint")?,
        token_url: url(kind.token_url, "tokenEndpoint")?,
        user_info_url: url(kind.user_info_url, "userinfoEndpoint")?,
    })
}

/// A generic provider's endpoint from its config: https, or http outside production (a
/// provider on the developer's machine). Anything else is the project's misconfiguration.
fn endpoint(ctx: &Context, entry: &Value, key: &str) -> ApiResult<String> {
    let text = entry[key].as_str().unwrap_or_default();
    let parsed = url::Url::parse(text).map_err(|_| misconfigured(key))?;
    let production = ctx.config.environment == shared::context::Environment::Production;
    match parsed.scheme() {
        "https" => Ok(text.to_string()),
        "http" if !production => Ok(text.to_string()),
        _ => Err(misconfigured(key)),
    }
}

fn misconfigured(key: &str) -> ApiError {
    ApiError::status(400, format!("The OAuth provider's {key} must be an https URL."))
}

/// The user's facts as the provider tells them.
#[derive(Debug, Clone, PartialEq)]
pub struct UserInfo {
    pub account_id: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub display_name: Option<String>,
    pub profile_image_url: Option<String>,
}

/// What the provider's token endpoint gave.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// When the access token expires (ms), if the provider says.
    pub expires_at: Option<i64>,
    /// The scopes granted, if the provider says.
    pub scope: Option<String>,
    id_token: Option<String>,
}

/// The largest answer read from a provider.
const MAX_PROVIDER_ANSWER: usize = 64 * 1024;

impl Provider {
    /// Where the sign-in goes: the provider's authorization URL with our client, callback,
    /// scopes, state and PKCE challenge.
    pub fn authorization_url(
        &self,
        client_id: &str,
        callback: &str,
        extra_scope: &str,
        state: &str,
        challenge: &str,
    ) -> String {
        let mut url = url::Url::parse(&self.authorization_url).expect("validated endpoint");
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", callback)
            .append_pair("response_type", "code")
            .append_pair("scope", self.scopes(extra_scope).as_str())
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// The default scopes and any extra ones, space-separated.
    pub fn scopes(&self, extra_scope: &str) -> String {
        format!("{} {extra_scope}", self.kind.default_scopes).split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Exchanges the provider's `code` (with our PKCE verifier) for its tokens.
    pub async fn exchange_code(
        &self,
        ctx: &Context,
        client: &Client,
        code: &str,
        callback: &str,
        verifier: &str,
    ) -> ApiResult<TokenSet> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", callback),
            ("code_verifier", verifier),
        ];
        self.token_request(ctx, client, &form).await
    }

    /// A new access token for a connected account from its refresh token.
    pub async fn refresh(&self, ctx: &Context, client: &Client, refresh_token: &str) -> ApiResult<TokenSet> {
        self.token_request(ctx, client, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    async fn token_request(&self, ctx: &Context, client: &Client, form: &[(&str, &str)]) -> ApiResult<TokenSet> {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(form);
        let mut request = http::Request::post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        match self.kind.client_auth {
            ClientAuth::Basic => {
                use base64::Engine;
                // RFC 6749 §2.3.1: each part form-encoded before the Basic encoding.
                let pair = format!("{}:{}", form_encode(&client.id), form_encode(&client.secret));
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                request = request.header("authorization", format!("Basic {basic}"));
            }
            ClientAuth::Post => {
                body.append_pair("client_id", &client.id).append_pair("client_secret", &client.secret);
            }
        }
        let answer = self.call(ctx, request, body.finish().into_bytes()).await?;
        if let Some(error) = answer["error"].as_str() {
            return Err(provider_error(error, answer["error_description"].as_str()));
        }
        let access_token = answer["access_token"].as_str().filter(|t| !t.is_empty()).ok_or_else(|| {
            ApiError::status(502, "The OAuth provider's token endpoint answered without an access token.")
        })?;
        let text = |key: &str| answer[key].as_str().filter(|t| !t.is_empty()).map(str::to_string);
        Ok(TokenSet {
            access_token: access_token.to_string(),
            refresh_token: text("refresh_token"),
            expires_at: answer["expires_in"].as_i64().map(|s| ctx.now() + s * 1000),
            scope: text("scope"),
            id_token: text("id_token"),
        })
    }

    /// The user's facts: from the user-info endpoint, or the ID token where the provider has
    /// none.
    pub async fn user_info(&self, ctx: &Context, client: &Client, tokens: &TokenSet) -> ApiResult<UserInfo> {
        let (claims, pointers) = match self.kind.claims {
            Claims::UserInfo(pointers) => {
                let mut request = http::Request::get(&self.user_info_url)
                    .header("authorization", format!("Bearer {}", tokens.access_token))
                    .header("accept", "application/json")
                    .header("user-agent", "stack-edge");
                if self.kind.client_id_header {
                    request = request.header("client-id", &client.id);
                }
                (self.call(ctx, request, Vec::new()).await?, pointers)
            }
            Claims::IdToken(pointers) => (id_token_claims(tokens.id_token.as_deref())?, pointers),
        };
        read_claims(&claims, &pointers)
    }

    async fn call(&self, ctx: &Context, request: http::request::Builder, body: Vec<u8>) -> ApiResult<Value> {
        let mut request = request.body(body).map_err(|e| ApiError::internal(e.to_string()))?;
        request.extensions_mut().insert(ResponseLimit(MAX_PROVIDER_ANSWER));
        let response = ctx.http.send(request).await.map_err(|e| {
            tracing::warn!(provider = %self.id, error = %e, "the OAuth provider could not be reached");
            ApiError::from(KnownError::oauth_provider_temporarily_unavailable())
        })?;
        let status = response.status();
        let answer: Value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        if status.is_server_error() {
            return Err(KnownError::oauth_provider_temporarily_unavailable().into());
        }
        if !status.is_success() && answer["error"].is_null() {
            return Err(ApiError::status(502, format!("The OAuth provider answered HTTP {}.", status.as_u16())));
        }
        Ok(answer)
    }
}

/// Our OAuth client at a provider.
pub struct Client {
    pub id: String,
    pub secret: String,
}

impl Provider {
    /// Our client at the provider: Stack's shared app, or the project's `clientId` /
    /// `clientSecret`. Without one the project (or deployment) is misconfigured.
    pub fn client(&self, ctx: &Context, tenancy_config: &Value) -> ApiResult<Client> {
        let entry = &tenancy_config["auth"]["oauth"]["providers"][&self.id];
        let (id, secret) = if self.shared {
            let find = |list: &[(&str, String)]| list.iter().find(|(p, _)| *p == self.kind.id).map(|(_, v)| v.clone());
            (find(&ctx.config.shared_oauth_client_ids), find(&ctx.config.shared_oauth_client_secrets))
        } else {
            (entry["clientId"].as_str().map(str::to_string), entry["clientSecret"].as_str().map(str::to_string))
        };
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            return Err(ApiError::internal(format!(
                "no OAuth client id for {} (STACK_{}_CLIENT_ID or the provider's clientId)",
                self.id,
                self.kind.id.to_ascii_uppercase()
            )));
        };
        Ok(Client { id, secret: secret.unwrap_or_default() })
    }
}

/// A provider's `error` answer as the contract's error.
pub fn provider_error(error: &str, description: Option<&str>) -> ApiError {
    match error {
        "access_denied" => KnownError::oauth_provider_access_denied().into(),
        "temporarily_unavailable" | "server_error" => KnownError::oauth_provider_temporarily_unavailable().into(),
        _ => {
            let description: String = description.unwrap_or_default().chars().take(200).collect();
            ApiError::status(
                400,
                format!("The OAuth provider refused the sign-in: {error}. {description}").trim_end().to_string(),
            )
        }
    }
}

fn form_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The payload of an ID token (not verified; see [`Claims::IdToken`]).
fn id_token_claims(id_token: Option<&str>) -> ApiResult<Value> {
    let bad = || ApiError::status(502, "The OAuth provider answered without a readable ID token.");
    let payload = id_token.and_then(|t| t.split('.').nth(1)).ok_or_else(bad)?;
    let bytes = shared::identity::crypto::base64url_decode(payload).ok_or_else(bad)?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// The user's facts from the provider's JSON. An account id may be a number (GitHub).
fn read_claims(claims: &Value, p: &Pointers) -> ApiResult<UserInfo> {
    let text = |pointer: Option<&str>| -> Option<String> {
        match claims.pointer(pointer?)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let account_id = text(Some(p.account_id))
        .filter(|id| id.len() <= 256)
        .ok_or_else(|| ApiError::status(502, "The OAuth provider's user info has no account id."))?;
    let email = text(p.email).map(|e| e.to_lowercase()).filter(|e| e.len() <= 254 && e.contains('@'));
    let verified = p.email_verified.and_then(|ptr| claims.pointer(ptr)).is_some_and(|v| v == true || v == "true");
    let bounded = |s: Option<String>| s.map(|s| s.chars().take(1000).collect::<String>());
    Ok(UserInfo {
        account_id,
        email_verified: email.is_some() && verified,
        email,
        display_name: bounded(text(p.display_name)),
        profile_image_url: bounded(text(p.profile_image_url)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_are_read_through_each_providers_pointers() {
        let github = KINDS.iter().find(|k| k.id == "github").unwrap();
        let Claims::UserInfo(p) = github.claims else { panic!() };
        let info = read_claims(&json!({"id": 42, "email": "Ada@Example.com", "name": "Ada"}), &p).unwrap();
        assert_eq!(info.account_id, "42");
        assert_eq!(info.email.as_deref(), Some("ada@example.com"));
        assert!(!info.email_verified, "GitHub's email is not taken as verified");
        let info = read_claims(&json!({"sub": "s", "email": "a@b.c", "email_verified": true}), &OIDC_CLAIMS).unwrap();
        assert!(info.email_verified);
        assert!(read_claims(&json!({"email": "a@b.c"}), &OIDC_CLAIMS).is_err(), "no account id");
    }

    #[test]
    fn every_standard_provider_is_a_complete_row() {
        for k in KINDS.iter().filter(|k| k.id != "oidc") {
            assert!(k.authorization_url.starts_with("https://"), "{}", k.id);
            assert!(k.token_url.starts_with("https://"), "{}", k.id);
            assert!(matches!(k.claims, Claims::IdToken(_)) || k.user_info_url.starts_with("https://"), "{}", k.id);
        }
    }
}
