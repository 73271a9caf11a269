//! Analytics data for tests and benchmarks: the usability corpus of valid queries, and
//! synthetic tenancies (events with JSON data, users, teams and members, sessions, contact
//! channels) written straight into the `analytics_internal` tables with
//! `INSERT ... SELECT FROM numbers(n)`.

use shared::adapters::native::ReqwestClient;
use shared::analytics::clickhouse::{ClickHouse, Query};

/// The usability corpus of valid analytics queries (`tests/corpus/analytics-usability.sql`):
/// statements end in `;` at the end of a line; `--` lines are comments.
pub fn usability_corpus() -> Vec<String> {
    let text = include_str!("../corpus/analytics-usability.sql");
    let without_comments: String =
        text.lines().filter(|l| !l.trim_start().starts_with("--")).map(|l| format!("{l}\n")).collect();
    without_comments.split(";\n").map(str::trim).filter(|q| !q.is_empty()).map(String::from).collect()
}

/// The user id of user `n` of any project (ids repeat across projects on purpose).
const USER_ID: &str = "toUUID(concat('00000000-0000-4000-8000-', leftPad(toString(N), 12, '0')))";

/// What one tenancy's data looks like; tenancies differ in every dimension the corpus reads.
#[derive(Clone, Copy)]
pub struct Data {
    /// Varies the mix of types, flags and countries.
    pub k: u32,
    pub events: u32,
    /// Users are numbered `first_user..first_user + users`.
    pub first_user: u32,
    pub users: u32,
    pub event_types: &'static str,
    pub first_day: &'static str,
    pub days: u32,
    pub domain: &'static str,
}

/// Seeds one tenancy: events, users, 4 teams with members, sessions and contact channels.
pub async fn seed(ch: &ClickHouse, project: &str, branch: &str, d: &Data) {
    let Data { k, events, first_user, users, event_types, first_day, days, domain } = *d;
    let types = event_types.split(',').count();
    let span = days * 86_400;
    let user = |n: &str| USER_ID.replace('N', &format!("({first_user} + {n})"));
    let statements = [
        format!(
            "INSERT INTO analytics_internal.events (event_type, event_at, data, project_id, branch_id, user_id)
             SELECT splitByChar(',', '{event_types}')[1 + (number * 7 + {k}) % {types}],
               toDateTime64('{first_day} 00:00:00', 3, 'UTC') + toIntervalSecond((number * 3571 + {k} * 97) % {span}),
               CAST(concat('{{\"is_anonymous\":', if((number + {k}) % 5 = 0, 'true', 'false'),
                 ',\"url\":\"https://app.example/p', toString(number % 6),
                 '\",\"referrer_url\":\"https://', ['google.com', 'github.com', 'news.ycombinator.com'][1 + (number + {k}) % 3],
                 '/x\",\"ip_info\":{{\"country_code\":\"', ['US', 'DE', 'FR', 'JP', 'BR'][1 + (number + {k}) % (4 + {k} % 2)], '\"}}}}'), 'JSON'),
               {{p:String}}, {{b:String}}, toString({})
             FROM numbers({events})",
            user(&format!("(number * 13 + {k}) % {users}"))
        ),
        format!(
            "INSERT INTO analytics_internal.users (project_id, branch_id, id, display_name, primary_email,
               primary_email_verified, signed_up_at, client_metadata, client_read_only_metadata, server_metadata,
               is_anonymous, restricted_by_admin, sync_sequence_id, sync_is_deleted)
             SELECT {{p:String}}, {{b:String}}, {}, concat('User ', toString(number)),
               concat('user', toString(number), '@{domain}'), number % 2,
               toDateTime64('2026-10-01 00:00:00', 3, 'UTC') + toIntervalDay(number), '{{}}', '{{}}', '{{}}',
               (number + {k}) % 7 = 0, 0, 1, number = {users} - 1
             FROM numbers({users})",
            user("number")
        ),
        "INSERT INTO analytics_internal.teams (project_id, branch_id, id, display_name, created_at,
               client_metadata, client_read_only_metadata, server_metadata, sync_sequence_id, sync_is_deleted)
             SELECT {p:String}, {b:String}, toUUID(concat('10000000-0000-4000-8000-', leftPad(toString(number), 12, '0'))),
               concat('Team ', toString(number)), toDateTime64('2026-10-01 00:00:00', 3, 'UTC'), '{}', '{}', '{}', 1, 0
             FROM numbers(4)"
            .to_string(),
        format!(
            "INSERT INTO analytics_internal.team_member_profiles (project_id, branch_id, team_id, user_id, created_at,
               sync_sequence_id, sync_is_deleted)
             SELECT {{p:String}}, {{b:String}},
               toUUID(concat('10000000-0000-4000-8000-', leftPad(toString((number + {k}) % 4), 12, '0'))), {},
               toDateTime64('2026-10-02 00:00:00', 3, 'UTC'), 1, 0
             FROM numbers({})",
            user("number"),
            20 + k
        ),
        format!(
            "INSERT INTO analytics_internal.refresh_tokens (project_id, branch_id, id, user_id, created_at, last_used_at,
               is_impersonation, sync_sequence_id, sync_is_deleted)
             SELECT {{p:String}}, {{b:String}}, generateUUIDv4(), {},
               toDateTime64('2026-11-01 00:00:00', 3, 'UTC') + toIntervalHour(number),
               toDateTime64('2026-11-02 00:00:00', 3, 'UTC') + toIntervalHour(number), 0, 1, 0
             FROM numbers({})",
            user(&format!("(number * 7 + {k}) % {users}")),
            50 + k
        ),
        format!(
            "INSERT INTO analytics_internal.contact_channels (project_id, branch_id, id, user_id, type, value, is_primary,
               is_verified, used_for_auth, created_at, sync_sequence_id, sync_is_deleted)
             SELECT {{p:String}}, {{b:String}}, generateUUIDv4(), {}, if(number % 10 = 0, 'phone', 'email'),
               concat('user', toString(number), '@{domain}'), 1, (number + {k}) % 3 = 0, 1,
               toDateTime64('2026-10-01 00:00:00', 3, 'UTC'), 1, 0
             FROM numbers({users})",
            user("number")
        ),
    ];
    let http = ReqwestClient::new();
    for sql in statements {
        ch.execute(&http, &Query::new(sql).param("p", project).param("b", branch)).await.expect("seed");
    }
}
