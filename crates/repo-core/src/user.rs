//! Users.

use crate::error::{Attempt, Field, RepoError, RepoResult, State};
use crate::ids::UserId;
use crate::page::{Cursor, CursorPage, CursorRequest, Page, PageRequest};
use crate::time::Timestamp;
use crate::validate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A person who owns collections and API keys.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Generated id.
    pub id: UserId,
    /// Unique login name, 1-64 characters.
    pub username: String,
    /// Unique email, stored lowercase.
    pub email: String,
    /// Display name.
    pub full_name: Option<String>,
    /// PHC-format password hash produced by the caller. Never shown by `Debug`.
    #[serde(skip_serializing)]
    pub hashed_password: String,
    /// Whether the user may sign in.
    pub is_active: bool,
    /// Whether the user bypasses access checks.
    pub is_superuser: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Last successful login.
    pub last_login: Option<Timestamp>,
}

impl User {
    /// This user's position in a newest-first cursor listing.
    pub fn cursor(&self) -> Cursor {
        Cursor::after_int(self.created_at, self.id.0)
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("email", &self.email)
            .field("full_name", &self.full_name)
            .field("hashed_password", &"<redacted>")
            .field("is_active", &self.is_active)
            .field("is_superuser", &self.is_superuser)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("last_login", &self.last_login)
            .finish()
    }
}

/// Input for [`UserRepository::create`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name.
    pub username: String,
    /// Email (any case).
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub full_name: Option<String>,
    /// PHC-format hash.
    pub hashed_password: String,
    /// Defaults to `true`.
    #[serde(default = "crate::serde_fields::yes")]
    pub is_active: bool,
    /// Defaults to `false`.
    #[serde(default)]
    pub is_superuser: bool,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("full_name", &self.full_name)
            .field("hashed_password", &"<redacted>")
            .field("is_active", &self.is_active)
            .field("is_superuser", &self.is_superuser)
            .finish()
    }
}

/// Empty names and hash (fill them in; `create` refuses them empty), active, not a
/// superuser: the base of the named-field form.
///
/// ```
/// # use repo_core::NewUser;
/// let user = NewUser {
///     username: "ada".into(),
///     email: "ada@example.com".into(),
///     hashed_password: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
///     ..NewUser::default()
/// };
/// assert!(user.is_active && !user.is_superuser);
/// ```
impl Default for NewUser {
    fn default() -> Self {
        Self::new("", "", "")
    }
}

impl NewUser {
    /// An active, non-superuser user.
    pub fn new(
        username: impl Into<String>,
        email: impl Into<String>,
        hashed_password: impl Into<String>,
    ) -> Self {
        Self {
            username: username.into(),
            email: email.into(),
            full_name: None,
            hashed_password: hashed_password.into(),
            is_active: true,
            is_superuser: false,
        }
    }

    /// Checks every rule and returns the value as it will be stored (email lowercased).
    pub fn validated(&self) -> RepoResult<NewUser> {
        validate::username(&self.username)?;
        let email = validate::email(&self.email)?;
        validate::opt_text(Field::FullName, self.full_name.as_deref())?;
        validate::hashed_password(&self.hashed_password)?;
        Ok(NewUser {
            email,
            ..self.clone()
        })
    }
}

/// Changes for [`UserRepository::update`]; `None` leaves a field as it is.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserPatch {
    /// New login name.
    pub username: Option<String>,
    /// New email.
    pub email: Option<String>,
    /// New display name (`Some(None)` clears it; `null` in JSON).
    #[serde(deserialize_with = "crate::serde_fields::clearable")]
    pub full_name: Option<Option<String>>,
    /// New password hash.
    pub hashed_password: Option<String>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// Grant or remove superuser.
    pub is_superuser: Option<bool>,
}

impl fmt::Debug for UserPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPatch")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("full_name", &self.full_name)
            .field(
                "hashed_password",
                &self.hashed_password.as_ref().map(|_| "<redacted>"),
            )
            .field("is_active", &self.is_active)
            .field("is_superuser", &self.is_superuser)
            .finish()
    }
}

impl UserPatch {
    /// Checks every rule and returns the patch as it will be stored (email lowercased).
    pub fn validated(&self) -> RepoResult<UserPatch> {
        if let Some(u) = &self.username {
            validate::username(u)?;
        }
        let email = self.email.as_deref().map(validate::email).transpose()?;
        if let Some(name) = &self.full_name {
            validate::opt_text(Field::FullName, name.as_deref())?;
        }
        if let Some(h) = &self.hashed_password {
            validate::hashed_password(h)?;
        }
        Ok(UserPatch {
            email,
            ..self.clone()
        })
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.username.is_none()
            && self.email.is_none()
            && self.full_name.is_none()
            && self.hashed_password.is_none()
            && self.is_active.is_none()
            && self.is_superuser.is_none()
    }
}

/// Filters for [`UserRepository::list`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserFilter {
    /// Only users with this `is_active`.
    pub is_active: Option<bool>,
    /// Only users with this `is_superuser`.
    pub is_superuser: Option<bool>,
}

/// How [`UserRepository::delete`] treats collections the user still owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMode {
    /// Refuse with `InvalidState` while the user owns collections.
    #[default]
    Restrict,
    /// Delete the user's collections (and everything in them) too.
    Cascade,
}

impl DeleteMode {
    /// What happens to the collections a user owns when the user is deleted:
    /// `Restrict` asks `count_owned` and refuses (`InvalidState`) while the user owns
    /// any; `Cascade` answers `true` (delete them first) without counting.
    pub fn deletes_owned_collections(
        self,
        count_owned: impl FnOnce() -> RepoResult<i64>,
    ) -> RepoResult<bool> {
        match self {
            Self::Restrict if count_owned()? > 0 => Err(RepoError::invalid_state(
                State::OwnsCollections,
                Attempt::Delete,
            )),
            Self::Restrict => Ok(false),
            Self::Cascade => Ok(true),
        }
    }
}

/// Users: create, read, update, delete, list.
pub trait UserRepository: Send + Sync {
    /// Creates a user. A taken username or email is `AlreadyExists` naming the field.
    fn create(&self, new: &NewUser) -> RepoResult<User>;
    /// The user with this id, or `NotFound`.
    fn get(&self, id: UserId) -> RepoResult<User>;
    /// The user with this username (exact), or `NotFound`.
    fn get_by_username(&self, username: &str) -> RepoResult<User>;
    /// The user with this email (any case), or `NotFound`.
    fn get_by_email(&self, email: &str) -> RepoResult<User>;
    /// Applies the patch and returns the updated user.
    fn update(&self, id: UserId, patch: &UserPatch) -> RepoResult<User>;
    /// Deletes the user with their API keys and grants; see [`DeleteMode`].
    fn delete(&self, id: UserId, mode: DeleteMode) -> RepoResult<()>;
    /// Users matching `filter`, newest first.
    fn list(&self, filter: UserFilter, page: PageRequest) -> RepoResult<Page<User>>;
    /// [`list`](Self::list) by cursor: stable while users are created between pages.
    fn list_by_cursor(
        &self,
        filter: UserFilter,
        page: &CursorRequest,
    ) -> RepoResult<CursorPage<User>>;
    /// How many users match `filter`.
    fn count(&self, filter: UserFilter) -> RepoResult<u64>;
    /// Sets `last_login` to now and returns the user.
    fn record_login(&self, id: UserId) -> RepoResult<User>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrict_refuses_an_owner_and_cascade_does_not_count() {
        assert!(matches!(
            DeleteMode::Restrict.deletes_owned_collections(|| Ok(2)),
            Err(RepoError::InvalidState { .. })
        ));
        assert!(!DeleteMode::Restrict
            .deletes_owned_collections(|| Ok(0))
            .unwrap());
        assert!(DeleteMode::Cascade
            .deletes_owned_collections(|| unreachable!("cascade does not count"))
            .unwrap());
    }
}
