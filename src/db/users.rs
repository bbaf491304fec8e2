//! Users, sessions and refresh tokens.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::schema::{refresh_tokens, sessions, users};
use crate::domain::{SessionId, UserId};
use diesel_async::AsyncPgConnection;

/// A stored user.
#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Normalised email.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A user to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    /// Id.
    pub id: UserId,
    /// Normalised email.
    pub email: &'a str,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
}

/// Unique constraint on `users.email`, mapped to CONFLICT by the service.
pub const EMAIL_UNIQUE: &str = "users_email_key";

/// Inserts a user. A taken email fails with a unique violation on [`EMAIL_UNIQUE`].
pub async fn insert(conn: &mut AsyncPgConnection, user: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// The user with this normalised email.
pub async fn find_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// The user with this id.
pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Starts a session for `user`.
pub async fn create_session(conn: &mut AsyncPgConnection, id: SessionId, user: UserId) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values((sessions::id.eq(id), sessions::user_id.eq(user)))
        .execute(conn)
        .await
        .map(|_| ())
}

/// The owner of `session` when it exists and is not revoked.
pub async fn active_session_user(conn: &mut AsyncPgConnection, session: SessionId) -> QueryResult<Option<UserId>> {
    sessions::table
        .find(session)
        .filter(sessions::revoked_at.is_null())
        .select(sessions::user_id)
        .first(conn)
        .await
        .optional()
}

/// Revokes a session; returns false when it was already revoked or missing.
pub async fn revoke_session(conn: &mut AsyncPgConnection, session: SessionId, reason: &str) -> QueryResult<bool> {
    diesel::update(sessions::table.find(session).filter(sessions::revoked_at.is_null()))
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .execute(conn)
        .await
        .map(|n| n == 1)
}

/// A refresh token row, read under `FOR UPDATE` during rotation.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    /// Id.
    pub id: uuid::Uuid,
    /// The session (rotation family).
    pub session_id: SessionId,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Set when the token was exchanged; a second exchange is reuse.
    pub used_at: Option<DateTime<Utc>>,
}

/// Stores a refresh token's hash.
pub async fn insert_refresh_token(
    conn: &mut AsyncPgConnection,
    session: SessionId,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::id.eq(uuid::Uuid::now_v7()),
            refresh_tokens::session_id.eq(session),
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// The refresh token with this hash and its session's state, row-locked so two
/// concurrent exchanges of one token serialise (the second sees `used_at`).
pub async fn lock_refresh_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<(RefreshToken, UserId, Option<DateTime<Utc>>)>> {
    refresh_tokens::table
        .inner_join(sessions::table)
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select((RefreshToken::as_select(), sessions::user_id, sessions::revoked_at))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks a refresh token as exchanged.
pub async fn mark_refresh_token_used(conn: &mut AsyncPgConnection, id: uuid::Uuid) -> QueryResult<()> {
    diesel::update(refresh_tokens::table.find(id))
        .set(refresh_tokens::used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}
