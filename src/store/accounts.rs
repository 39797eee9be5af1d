//! The holders' accounts (SPEC §11): the server's own secrets and signing keys,
//! accounts, their codes, failure counters and sessions. Secrets are stored only
//! as hashes (see `account::secret`).

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};

use super::dialect::Conn;
use super::sql::Sql;

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    value: String,
}

/// A secret of the server (`server_secret`), if made.
pub fn secret(conn: &mut Conn, name: &str) -> diesel::QueryResult<Option<String>> {
    let mut sql = Sql::new("SELECT value FROM server_secret WHERE name = ");
    sql.text(name);
    Ok(sql.load::<TextRow>(conn)?.pop().map(|row| row.value))
}

/// Stores a secret unless one of that name exists (two instances starting at once
/// keep the first).
pub fn insert_secret(
    conn: &mut Conn,
    name: &str,
    value: &str,
    now: &str,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("INSERT INTO server_secret (name, value, created_at) VALUES (");
    sql.text(name)
        .push(", ")
        .text(value)
        .push(", ")
        .text(now)
        .push(") ON CONFLICT (name) DO NOTHING");
    sql.execute(conn).map(|_| ())
}

/// A signing key of the server.
#[derive(QueryableByName)]
pub struct IssuerKeyRow {
    #[diesel(sql_type = Text)]
    pub kid: String,
    #[diesel(sql_type = Text)]
    pub private_pem: String,
}

/// The keys not retired, newest first.
pub fn issuer_keys(conn: &mut Conn) -> diesel::QueryResult<Vec<IssuerKeyRow>> {
    Sql::new(
        "SELECT kid, private_pem FROM issuer_key WHERE retired_at IS NULL \
         ORDER BY created_at DESC, kid",
    )
    .load(conn)
}

pub fn insert_issuer_key(
    conn: &mut Conn,
    kid: &str,
    pem: &str,
    now: &str,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("INSERT INTO issuer_key (kid, private_pem, created_at) VALUES (");
    sql.text(kid)
        .push(", ")
        .text(pem)
        .push(", ")
        .text(now)
        .push(")");
    sql.execute(conn).map(|_| ())
}

/// Retires a key; the number of keys it retired (0: no such key in use).
pub fn retire_issuer_key(conn: &mut Conn, kid: &str, now: &str) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE issuer_key SET retired_at = ");
    sql.text(now)
        .push(" WHERE retired_at IS NULL AND kid = ")
        .text(kid);
    sql.execute(conn)
}

/// A Patient as stored: its id and JSON.
#[derive(QueryableByName)]
pub struct PatientRow {
    #[diesel(sql_type = Text)]
    pub res_id: String,
    #[diesel(sql_type = Text)]
    pub content: String,
}

/// The Patients (not deleted) whose INS-NIR (or test or demo NIR) is `nir`.
pub fn patients_with_nir(conn: &mut Conn, nir: &str) -> diesel::QueryResult<Vec<PatientRow>> {
    let mut sql = Sql::new(
        "SELECT r.res_id, r.content FROM search_token t JOIN resources r ON r.pk = t.resource_pk \
         WHERE t.res_type = 'Patient' AND t.param = 'identifier' AND t.code = ",
    );
    sql.text(nir)
        .push(" AND t.system IN ")
        .text_list([
            crate::fhir::INS_NIR_SYSTEM,
            crate::fhir::INS_NIR_TEST_SYSTEM,
            crate::fhir::INS_NIR_DEMO_SYSTEM,
        ])
        .push(" AND r.res_type = 'Patient' AND r.deleted = ")
        .boolean(false)
        .push(" ORDER BY r.res_id LIMIT 2");
    sql.load(conn)
}

/// A holder's account.
#[derive(Debug, Clone, QueryableByName)]
pub struct AccountRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub patient_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub identifiant: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub password_hash: Option<String>,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Text)]
    pub mobile: String,
    #[diesel(sql_type = Text)]
    pub code_channel: String,
}

const ACCOUNT_COLUMNS: &str = "SELECT id, patient_id, identifiant, password_hash, email, mobile, code_channel FROM account WHERE ";

pub fn account_of_patient(
    conn: &mut Conn,
    patient: &str,
) -> diesel::QueryResult<Option<AccountRow>> {
    let mut sql = Sql::new(&format!("{ACCOUNT_COLUMNS}patient_id = "));
    sql.text(patient);
    Ok(sql.load(conn)?.pop())
}

pub fn account_by_identifiant(
    conn: &mut Conn,
    identifiant: &str,
) -> diesel::QueryResult<Option<AccountRow>> {
    let mut sql = Sql::new(&format!("{ACCOUNT_COLUMNS}identifiant = "));
    sql.text(identifiant);
    Ok(sql.load(conn)?.pop())
}

pub fn account_by_id(conn: &mut Conn, id: &str) -> diesel::QueryResult<Option<AccountRow>> {
    let mut sql = Sql::new(&format!("{ACCOUNT_COLUMNS}id = "));
    sql.text(id);
    Ok(sql.load(conn)?.pop())
}

#[derive(QueryableByName)]
struct SeenRow {
    #[diesel(sql_type = Nullable<Text>)]
    messages_seen_at: Option<String>,
}

/// The server time of the latest message the holder saw on the messages page.
pub fn messages_seen_at(conn: &mut Conn, account: &str) -> diesel::QueryResult<Option<String>> {
    let mut sql = Sql::new("SELECT messages_seen_at FROM account WHERE id = ");
    sql.text(account);
    Ok(sql
        .load::<SeenRow>(conn)?
        .pop()
        .and_then(|row| row.messages_seen_at))
}

/// Moves the read mark forward to `at` (never back: two pages open at once).
pub fn saw_messages(conn: &mut Conn, account: &str, at: &str) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE account SET messages_seen_at = ");
    sql.text(at)
        .push(" WHERE id = ")
        .text(account)
        .push(" AND (messages_seen_at IS NULL OR messages_seen_at < ")
        .text(at)
        .push(")");
    sql.execute(conn)
}

/// Creates the space's account with these contacts, or sets them on the one it
/// has; returns the account's id.
pub fn put_contacts(
    conn: &mut Conn,
    new_id: &str,
    patient: &str,
    email: &str,
    mobile: &str,
    channel: &str,
    now: &str,
) -> diesel::QueryResult<String> {
    let mut sql = Sql::new(
        "INSERT INTO account (id, patient_id, email, mobile, code_channel, created_at, updated_at) VALUES (",
    );
    sql.text(new_id)
        .push(", ")
        .text(patient)
        .push(", ")
        .text(email)
        .push(", ")
        .text(mobile)
        .push(", ")
        .text(channel)
        .push(", ")
        .text(now)
        .push(", ")
        .text(now)
        .push(
            ") ON CONFLICT (patient_id) DO UPDATE SET email = excluded.email, \
             mobile = excluded.mobile, code_channel = excluded.code_channel, \
             updated_at = excluded.updated_at RETURNING id AS value",
        );
    sql.load::<TextRow>(conn)?
        .pop()
        .map(|row| row.value)
        .ok_or(diesel::result::Error::NotFound)
}

/// Sets the account's identifiant and password. An identifiant another account
/// holds fails with a unique violation.
pub fn set_credentials(
    conn: &mut Conn,
    account: &str,
    identifiant: &str,
    password_hash: &str,
    now: &str,
) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE account SET identifiant = ");
    sql.text(identifiant)
        .push(", password_hash = ")
        .text(password_hash)
        .push(", updated_at = ")
        .text(now)
        .push(" WHERE id = ")
        .text(account);
    sql.execute(conn)
}

pub fn set_password(
    conn: &mut Conn,
    account: &str,
    password_hash: &str,
    now: &str,
) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE account SET password_hash = ");
    sql.text(password_hash)
        .push(", updated_at = ")
        .text(now)
        .push(" WHERE id = ")
        .text(account);
    sql.execute(conn)
}

/// A code, ticket or challenge (`account_code`).
#[derive(Debug, Clone, QueryableByName)]
pub struct CodeRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub patient_id: String,
    #[diesel(sql_type = Text)]
    pub purpose: String,
    #[diesel(sql_type = Text)]
    pub code_hash: String,
    #[diesel(sql_type = Text)]
    pub expires_at: String,
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub used_at: Option<String>,
}

const CODE_COLUMNS: &str = "SELECT id, patient_id, purpose, code_hash, expires_at, CAST(attempts AS BIGINT) AS attempts, used_at FROM account_code WHERE ";

pub struct NewCode<'a> {
    pub id: &'a str,
    pub patient: &'a str,
    pub purpose: &'a str,
    pub code_hash: &'a str,
    pub expires_at: &'a str,
}

pub fn insert_code(conn: &mut Conn, code: &NewCode<'_>, now: &str) -> diesel::QueryResult<()> {
    let mut sql = Sql::new(
        "INSERT INTO account_code (id, patient_id, purpose, code_hash, expires_at, created_at) VALUES (",
    );
    sql.text(code.id)
        .push(", ")
        .text(code.patient)
        .push(", ")
        .text(code.purpose)
        .push(", ")
        .text(code.code_hash)
        .push(", ")
        .text(code.expires_at)
        .push(", ")
        .text(now)
        .push(")");
    sql.execute(conn).map(|_| ())
}

pub fn code_by_id(conn: &mut Conn, id: &str) -> diesel::QueryResult<Option<CodeRow>> {
    let mut sql = Sql::new(&format!("{CODE_COLUMNS}id = "));
    sql.text(id);
    Ok(sql.load(conn)?.pop())
}

/// The newest code of this purpose for the space that is unused and unexpired.
pub fn live_code(
    conn: &mut Conn,
    patient: &str,
    purpose: &str,
    now: &str,
) -> diesel::QueryResult<Option<CodeRow>> {
    let mut sql = Sql::new(&format!("{CODE_COLUMNS}patient_id = "));
    sql.text(patient)
        .push(" AND purpose = ")
        .text(purpose)
        .push(" AND used_at IS NULL AND expires_at > ")
        .text(now)
        .push(" ORDER BY created_at DESC LIMIT 1");
    Ok(sql.load(conn)?.pop())
}

/// How many codes of this purpose the space was sent since `since`.
pub fn codes_since(
    conn: &mut Conn,
    patient: &str,
    purpose: &str,
    since: &str,
) -> diesel::QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut sql = Sql::new("SELECT COUNT(*) AS n FROM account_code WHERE patient_id = ");
    sql.text(patient)
        .push(" AND purpose = ")
        .text(purpose)
        .push(" AND created_at >= ")
        .text(since);
    Ok(sql.load::<Count>(conn)?.pop().map_or(0, |count| count.n))
}

/// Counts a wrong attempt at a code.
pub fn code_attempted(conn: &mut Conn, id: &str) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("UPDATE account_code SET attempts = attempts + 1 WHERE id = ");
    sql.text(id);
    sql.execute(conn).map(|_| ())
}

/// Marks a code used, if it still was not: 1 when this call used it (a code is
/// used once even by two requests at the same time).
pub fn use_code(conn: &mut Conn, id: &str, now: &str) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE account_code SET used_at = ");
    sql.text(now)
        .push(" WHERE used_at IS NULL AND id = ")
        .text(id);
    sql.execute(conn)
}

/// Ends every unused code of this purpose of the space but `keep` (a new one
/// replaces them; contacts or credentials changed).
pub fn end_codes(
    conn: &mut Conn,
    patient: &str,
    purpose: &str,
    keep: Option<&str>,
    now: &str,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("UPDATE account_code SET used_at = ");
    sql.text(now)
        .push(" WHERE used_at IS NULL AND patient_id = ")
        .text(patient)
        .push(" AND purpose = ")
        .text(purpose)
        .push(" AND id <> ")
        .text(keep.unwrap_or(""));
    sql.execute(conn).map(|_| ())
}

/// A failure counter (`account_throttle`).
#[derive(Debug, Clone, QueryableByName)]
pub struct ThrottleRow {
    #[diesel(sql_type = BigInt)]
    pub failures: i64,
    #[diesel(sql_type = Text)]
    pub window_start: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub locked_until: Option<String>,
}

pub fn throttle(conn: &mut Conn, key: &str) -> diesel::QueryResult<Option<ThrottleRow>> {
    let mut sql = Sql::new(
        "SELECT CAST(failures AS BIGINT) AS failures, window_start, locked_until \
         FROM account_throttle WHERE key = ",
    );
    sql.text(key);
    Ok(sql.load(conn)?.pop())
}

pub fn put_throttle(conn: &mut Conn, key: &str, row: &ThrottleRow) -> diesel::QueryResult<()> {
    let mut sql = Sql::new(
        "INSERT INTO account_throttle (key, failures, window_start, locked_until) VALUES (",
    );
    sql.text(key)
        .push(", ")
        .int(row.failures)
        .push(", ")
        .text(row.window_start.as_str())
        .push(", ")
        .optional_text(row.locked_until.as_deref())
        .push(
            ") ON CONFLICT (key) DO UPDATE SET failures = excluded.failures, \
             window_start = excluded.window_start, locked_until = excluded.locked_until",
        );
    sql.execute(conn).map(|_| ())
}

/// What [`purge_expired`] removes: each table, with when a row of it no longer
/// serves (nothing reads it past that time but to refuse it, which its absence
/// does as well) as a condition on a time at least a day ago.
const EXPIRED_ROWS: [(&str, &str, &str); 5] = [
    // Codes live 30 minutes at most; the last hour's are counted per space.
    ("account_code", "id", "expires_at < "),
    // A window of 15 minutes; a lock-out, when there is one, ends after the
    // window's start.
    (
        "account_throttle",
        "key",
        "COALESCE(locked_until, window_start) < ",
    ),
    ("account_session", "id", "expires_at < "),
    ("oauth_code", "code_hash", "expires_at < "),
    // A rotated token is kept until it expires (presented again before, it
    // revokes its grant).
    ("refresh_token", "token_hash", "expires_at < "),
];

/// Removes at most `limit` rows of each account table that expired before
/// `before` (codes, failure counters, sessions, authorisation codes, refresh
/// tokens): without it they would pile up for ever. Answers how many it removed.
pub fn purge_expired(conn: &mut Conn, before: &str, limit: i64) -> diesel::QueryResult<usize> {
    let mut removed = 0;
    for (table, key, expired) in EXPIRED_ROWS {
        let mut sql = Sql::new(&format!(
            "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE ({expired}"
        ));
        sql.text(before).push(") LIMIT ").int(limit).push(")");
        removed += sql.execute(conn)?;
    }
    Ok(removed)
}

pub fn clear_throttle(conn: &mut Conn, key: &str) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("DELETE FROM account_throttle WHERE key = ");
    sql.text(key);
    sql.execute(conn).map(|_| ())
}

/// A signed-in session.
#[derive(Debug, Clone, QueryableByName)]
pub struct SessionRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub account_id: String,
    #[diesel(sql_type = Text)]
    pub last_seen_at: String,
    #[diesel(sql_type = Text)]
    pub expires_at: String,
}

pub fn insert_session(
    conn: &mut Conn,
    id: &str,
    account: &str,
    now: &str,
    expires_at: &str,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new(
        "INSERT INTO account_session (id, account_id, created_at, last_seen_at, expires_at) VALUES (",
    );
    sql.text(id)
        .push(", ")
        .text(account)
        .push(", ")
        .text(now)
        .push(", ")
        .text(now)
        .push(", ")
        .text(expires_at)
        .push(")");
    sql.execute(conn).map(|_| ())
}

/// The session, unless it ended or expired.
pub fn live_session(
    conn: &mut Conn,
    id: &str,
    now: &str,
) -> diesel::QueryResult<Option<SessionRow>> {
    let mut sql = Sql::new(
        "SELECT id, account_id, last_seen_at, expires_at FROM account_session \
         WHERE ended_at IS NULL AND id = ",
    );
    sql.text(id).push(" AND expires_at > ").text(now);
    Ok(sql.load(conn)?.pop())
}

pub fn touch_session(conn: &mut Conn, id: &str, now: &str) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("UPDATE account_session SET last_seen_at = ");
    sql.text(now).push(" WHERE id = ").text(id);
    sql.execute(conn).map(|_| ())
}

pub fn end_session(conn: &mut Conn, id: &str, now: &str) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE account_session SET ended_at = ");
    sql.text(now)
        .push(" WHERE ended_at IS NULL AND id = ")
        .text(id);
    sql.execute(conn)
}

/// Ends every session of the account but `keep` (a password changed elsewhere).
pub fn end_sessions_of(
    conn: &mut Conn,
    account: &str,
    keep: Option<&str>,
    now: &str,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("UPDATE account_session SET ended_at = ");
    sql.text(now)
        .push(" WHERE ended_at IS NULL AND account_id = ")
        .text(account)
        .push(" AND id <> ")
        .text(keep.unwrap_or(""));
    sql.execute(conn).map(|_| ())
}

/// An app's authorisation by a holder (`app_grant`).
#[derive(Debug, Clone, QueryableByName)]
pub struct GrantRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub account_id: String,
    #[diesel(sql_type = Text)]
    pub client_id: String,
    /// Space-separated.
    #[diesel(sql_type = Text)]
    pub scopes: String,
    #[diesel(sql_type = Text)]
    pub created_at: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub revoked_at: Option<String>,
}

const GRANT_COLUMNS: &str =
    "SELECT id, account_id, client_id, scopes, created_at, revoked_at FROM app_grant WHERE ";

pub fn insert_grant(
    conn: &mut Conn,
    id: &str,
    account: &str,
    client_id: &str,
    scopes: &str,
    now: &str,
) -> diesel::QueryResult<()> {
    let mut sql =
        Sql::new("INSERT INTO app_grant (id, account_id, client_id, scopes, created_at) VALUES (");
    sql.text(id)
        .push(", ")
        .text(account)
        .push(", ")
        .text(client_id)
        .push(", ")
        .text(scopes)
        .push(", ")
        .text(now)
        .push(")");
    sql.execute(conn).map(|_| ())
}

pub fn grant(conn: &mut Conn, id: &str) -> diesel::QueryResult<Option<GrantRow>> {
    let mut sql = Sql::new(&format!("{GRANT_COLUMNS}id = "));
    sql.text(id);
    Ok(sql.load(conn)?.pop())
}

/// The account's authorisations that stand, newest first.
pub fn live_grants_of(conn: &mut Conn, account: &str) -> diesel::QueryResult<Vec<GrantRow>> {
    let mut sql = Sql::new(&format!(
        "{GRANT_COLUMNS}revoked_at IS NULL AND account_id = "
    ));
    sql.text(account).push(" ORDER BY created_at DESC, id");
    sql.load(conn)
}

pub fn revoke_grant(conn: &mut Conn, id: &str, now: &str) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE app_grant SET revoked_at = ");
    sql.text(now)
        .push(" WHERE revoked_at IS NULL AND id = ")
        .text(id);
    sql.execute(conn)
}

/// Revokes every authorisation the account gave (its password changed, or its
/// credentials were chosen again).
pub fn revoke_all_grants(conn: &mut Conn, account: &str, now: &str) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE app_grant SET revoked_at = ");
    sql.text(now)
        .push(" WHERE revoked_at IS NULL AND account_id = ")
        .text(account);
    sql.execute(conn)
}

/// Revokes every authorisation the account gave this app.
pub fn revoke_client_grants(
    conn: &mut Conn,
    account: &str,
    client_id: &str,
    now: &str,
) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE app_grant SET revoked_at = ");
    sql.text(now)
        .push(" WHERE revoked_at IS NULL AND account_id = ")
        .text(account)
        .push(" AND client_id = ")
        .text(client_id);
    sql.execute(conn)
}

/// An authorisation code, by the hash of its value.
#[derive(Debug, Clone, QueryableByName)]
pub struct OAuthCodeRow {
    #[diesel(sql_type = Text)]
    pub grant_id: String,
    #[diesel(sql_type = Text)]
    pub redirect_uri: String,
    #[diesel(sql_type = Text)]
    pub code_challenge: String,
    #[diesel(sql_type = Text)]
    pub expires_at: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub used_at: Option<String>,
}

pub fn insert_oauth_code(
    conn: &mut Conn,
    hash: &str,
    grant: &str,
    redirect_uri: &str,
    code_challenge: &str,
    expires_at: &str,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new(
        "INSERT INTO oauth_code (code_hash, grant_id, redirect_uri, code_challenge, expires_at) VALUES (",
    );
    sql.text(hash)
        .push(", ")
        .text(grant)
        .push(", ")
        .text(redirect_uri)
        .push(", ")
        .text(code_challenge)
        .push(", ")
        .text(expires_at)
        .push(")");
    sql.execute(conn).map(|_| ())
}

pub fn oauth_code(conn: &mut Conn, hash: &str) -> diesel::QueryResult<Option<OAuthCodeRow>> {
    let mut sql = Sql::new(
        "SELECT grant_id, redirect_uri, code_challenge, expires_at, used_at FROM oauth_code WHERE code_hash = ",
    );
    sql.text(hash);
    Ok(sql.load(conn)?.pop())
}

/// Marks an authorisation code used: 1 when this call used it.
pub fn use_oauth_code(conn: &mut Conn, hash: &str, now: &str) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE oauth_code SET used_at = ");
    sql.text(now)
        .push(" WHERE used_at IS NULL AND code_hash = ")
        .text(hash);
    sql.execute(conn)
}

/// A refresh token, by the hash of its value.
#[derive(Debug, Clone, QueryableByName)]
pub struct RefreshRow {
    #[diesel(sql_type = Text)]
    pub grant_id: String,
    #[diesel(sql_type = Text)]
    pub expires_at: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub used_at: Option<String>,
}

pub fn insert_refresh(
    conn: &mut Conn,
    hash: &str,
    grant: &str,
    expires_at: &str,
) -> diesel::QueryResult<()> {
    let mut sql = Sql::new("INSERT INTO refresh_token (token_hash, grant_id, expires_at) VALUES (");
    sql.text(hash)
        .push(", ")
        .text(grant)
        .push(", ")
        .text(expires_at)
        .push(")");
    sql.execute(conn).map(|_| ())
}

pub fn refresh(conn: &mut Conn, hash: &str) -> diesel::QueryResult<Option<RefreshRow>> {
    let mut sql =
        Sql::new("SELECT grant_id, expires_at, used_at FROM refresh_token WHERE token_hash = ");
    sql.text(hash);
    Ok(sql.load(conn)?.pop())
}

/// Marks a refresh token used (exchanged): 1 when this call used it.
pub fn use_refresh(conn: &mut Conn, hash: &str, now: &str) -> diesel::QueryResult<usize> {
    let mut sql = Sql::new("UPDATE refresh_token SET used_at = ");
    sql.text(now)
        .push(" WHERE used_at IS NULL AND token_hash = ")
        .text(hash);
    sql.execute(conn)
}
