//! Who asks for access (a user or an API key) and the rule that decides what a
//! principal may do on a collection. Backends read the facts in one statement
//! ([`PrincipalFacts`] plus the collection row and the two grants) and ask this module
//! for the answer, so the rule is written once.
//!
//! The rule (also in docs/semantics.md, "Access"):
//! - a user: owner or superuser ⇒ admin; otherwise the highest of the user's grant and,
//!   for a public collection, read ([`crate::effective_access`]);
//! - an API key that is revoked, expired, or whose user is inactive: no access at all;
//! - an unscoped API key (no collection grant, and its `permissions` document does not
//!   say `"scoped": true`): what its user may do;
//! - a scoped API key: on a collection it holds a grant on, the lower of that grant and
//!   its user's own level (a key never exceeds its user; a superuser's scoped key is
//!   still scoped); on any other collection nothing, except read on a public
//!   collection when its `permissions` document says `"read_public": true`.
//!
//! A grant to a key marks the key scoped (`"scoped": true` in its `permissions`), so
//! revoking its last grant leaves it with no access instead of handing it back all of
//! its user's rights.

use crate::api_key::{ApiKey, VerifiedKey};
use crate::enums::AccessLevel;
use crate::error::{Entity, Field, RepoError, RepoResult};
use crate::ids::{ApiKeyId, CollectionId, UserId};
use crate::time::Timestamp;
use serde::Serialize;
use serde_json::Value;
use std::fmt;

/// Key of the `permissions` document that marks an API key scoped.
pub const SCOPED: &str = "scoped";
/// Key of the `permissions` document that lets a scoped API key read public collections.
pub const READ_PUBLIC: &str = "read_public";

/// Who asks: a user, or an API key (acting for its user, within its scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Principal {
    /// A user, with the user's own rights.
    User(UserId),
    /// An API key; see the module docs for what it may do.
    ApiKey(ApiKeyId),
}

impl Principal {
    /// The user id to bind in an access query (`None` for a key).
    pub fn user_id(&self) -> Option<UserId> {
        match self {
            Self::User(u) => Some(*u),
            Self::ApiKey(_) => None,
        }
    }

    /// The key id to bind in an access query (`None` for a user).
    pub fn api_key_id(&self) -> Option<ApiKeyId> {
        match self {
            Self::User(_) => None,
            Self::ApiKey(k) => Some(*k),
        }
    }

    /// `NotFound` for a principal that does not exist (`entity` "user" or "api_key").
    pub fn not_found(&self) -> RepoError {
        match self {
            Self::User(u) => RepoError::not_found(Entity::User, u),
            Self::ApiKey(k) => RepoError::not_found(Entity::ApiKey, k),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(u) => write!(f, "user {u}"),
            Self::ApiKey(k) => write!(f, "api_key {k}"),
        }
    }
}

impl From<UserId> for Principal {
    fn from(u: UserId) -> Self {
        Self::User(u)
    }
}

impl From<ApiKeyId> for Principal {
    fn from(k: ApiKeyId) -> Self {
        Self::ApiKey(k)
    }
}

impl From<&ApiKey> for Principal {
    fn from(k: &ApiKey) -> Self {
        Self::ApiKey(k.id)
    }
}

impl From<&VerifiedKey> for Principal {
    fn from(v: &VerifiedKey) -> Self {
        Self::ApiKey(v.key.id)
    }
}

/// What a backend reads about an API key principal (same statement as the rest).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFacts {
    /// `api_keys.is_active`.
    pub is_active: bool,
    /// `api_keys.expires_at`.
    pub expires_at: Option<Timestamp>,
    /// `api_keys.permissions`.
    pub permissions: Option<Value>,
    /// Whether any `collection_permissions` row names the key.
    pub has_grants: bool,
}

/// What a backend reads about a principal: the acting user (the key's user for a
/// key) and, for a key, the key.
#[derive(Debug, Clone, PartialEq)]
pub struct PrincipalFacts {
    /// The acting user.
    pub user_id: UserId,
    /// `users.is_active` of the acting user.
    pub user_is_active: bool,
    /// `users.is_superuser` of the acting user.
    pub is_superuser: bool,
    /// The key, for an API-key principal.
    pub key: Option<KeyFacts>,
}

/// A principal after the rule has looked at it: how it may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A user, or an unscoped key acting as its user.
    User {
        /// The acting user.
        user: UserId,
        /// Whether that user is a superuser.
        is_superuser: bool,
    },
    /// A scoped key: only collections it holds a grant on (capped by its user), plus
    /// read on public collections when `read_public`.
    Scoped {
        /// The key's user.
        user: UserId,
        /// Whether that user is a superuser.
        is_superuser: bool,
        /// `"read_public": true` in the key's permissions.
        read_public: bool,
    },
    /// A revoked or expired key, or a key of an inactive user: no access at all.
    Denied,
}

/// Whether a key's `permissions` document sets `key` to `true`.
fn flag(permissions: Option<&Value>, key: &str) -> bool {
    permissions
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Whether a key is scoped: it holds a grant, or its permissions say `"scoped": true`.
pub fn key_is_scoped(permissions: Option<&Value>, has_grants: bool) -> bool {
    has_grants || flag(permissions, SCOPED)
}

/// The permissions document a key gets when it receives a grant: `None` when it is
/// already marked scoped, else the document with `"scoped": true` added. A document
/// that is not a JSON object (nor absent) cannot be marked: `Validation`.
pub fn mark_scoped(permissions: Option<&Value>) -> RepoResult<Option<Value>> {
    if flag(permissions, SCOPED) {
        return Ok(None);
    }
    let mut doc = match permissions {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            return Err(RepoError::validation(
                Field::Permissions,
                "an API key whose permissions document is not a JSON object cannot be granted access to a collection",
            ))
        }
    };
    doc.insert(SCOPED.to_owned(), Value::Bool(true));
    Ok(Some(Value::Object(doc)))
}

impl PrincipalFacts {
    /// How this principal may act at `now`.
    pub fn actor(&self, now: Timestamp) -> Actor {
        let Some(key) = &self.key else {
            return Actor::User {
                user: self.user_id,
                is_superuser: self.is_superuser,
            };
        };
        let usable = crate::api_key::KeyUseFacts {
            key_is_active: key.is_active,
            expires_at: key.expires_at,
            user_is_active: self.user_is_active,
        };
        if !usable.is_usable_at(now) {
            return Actor::Denied;
        }
        if key_is_scoped(key.permissions.as_ref(), key.has_grants) {
            Actor::Scoped {
                user: self.user_id,
                is_superuser: self.is_superuser,
                read_public: flag(key.permissions.as_ref(), READ_PUBLIC),
            }
        } else {
            Actor::User {
                user: self.user_id,
                is_superuser: self.is_superuser,
            }
        }
    }
}

/// What the access rule needs of a collection ([`crate::Collection::ownership`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// The owning user.
    pub owner_id: UserId,
    /// Whether every active user may read it.
    pub is_public: bool,
}

/// The access rule of docs/domain.md: owner ⇒ admin; superuser ⇒ admin; otherwise the
/// highest of the grant and (for public collections) read.
pub fn effective_access(
    is_owner: bool,
    is_superuser: bool,
    is_public: bool,
    grant: Option<AccessLevel>,
) -> Option<AccessLevel> {
    if is_owner || is_superuser {
        return Some(AccessLevel::Admin);
    }
    let public = is_public.then_some(AccessLevel::Read);
    grant.max(public)
}

/// Refuses unless `have` allows `needed`.
pub fn require_access(
    collection: CollectionId,
    have: Option<AccessLevel>,
    needed: AccessLevel,
) -> RepoResult<()> {
    match have {
        Some(level) if level.allows(needed) => Ok(()),
        _ => Err(RepoError::access_denied(format!(
            "{needed} access to collection {} is required",
            collection
        ))),
    }
}

impl Actor {
    /// The level this actor holds on `collection`, given the acting user's grant on
    /// it and (for a key) the key's grant on it.
    pub fn level(
        &self,
        collection: Ownership,
        user_grant: Option<AccessLevel>,
        key_grant: Option<AccessLevel>,
    ) -> Option<AccessLevel> {
        match *self {
            Self::Denied => None,
            Self::User { user, is_superuser } => effective_access(
                collection.owner_id == user,
                is_superuser,
                collection.is_public,
                user_grant,
            ),
            Self::Scoped {
                user,
                is_superuser,
                read_public,
            } => {
                let user_level = effective_access(
                    collection.owner_id == user,
                    is_superuser,
                    collection.is_public,
                    user_grant,
                );
                // `Option::min`: `None` (no grant, or no user access) wins.
                let granted = key_grant.min(user_level);
                let public = (read_public && collection.is_public).then_some(AccessLevel::Read);
                granted.max(public)
            }
        }
    }

    /// `AccessDenied` for [`Actor::Denied`] (used where there is no collection to
    /// name, such as listings).
    pub fn require_usable(&self) -> RepoResult<()> {
        match self {
            Self::Denied => Err(RepoError::access_denied(
                "the API key is revoked or expired, or its user is inactive",
            )),
            _ => Ok(()),
        }
    }

    /// Whether the actor may cancel an operation because it created it: a user (or an
    /// unscoped key of that user) who is its creator. A scoped key needs a write level.
    pub fn is_creator_of(&self, creator: UserId) -> bool {
        matches!(self, Self::User { user, .. } if *user == creator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collection(owner: i64, public: bool) -> Ownership {
        Ownership {
            owner_id: UserId(owner),
            is_public: public,
        }
    }

    fn key_facts(
        user: i64,
        su: bool,
        permissions: Option<Value>,
        has_grants: bool,
    ) -> PrincipalFacts {
        PrincipalFacts {
            user_id: UserId(user),
            user_is_active: true,
            is_superuser: su,
            key: Some(KeyFacts {
                is_active: true,
                expires_at: None,
                permissions,
                has_grants,
            }),
        }
    }

    #[test]
    fn unscoped_key_acts_as_its_user() {
        let a = key_facts(1, false, None, false).actor(crate::now());
        assert_eq!(
            a.level(collection(1, false), None, None),
            Some(AccessLevel::Admin)
        );
        assert_eq!(
            a.level(collection(2, true), None, None),
            Some(AccessLevel::Read)
        );
    }

    #[test]
    fn scoped_key_is_capped_and_skips_public_by_default() {
        let a = key_facts(1, false, None, true).actor(crate::now());
        let own = collection(1, false);
        assert_eq!(a.level(own, None, None), None);
        assert_eq!(
            a.level(own, None, Some(AccessLevel::Write)),
            Some(AccessLevel::Write)
        );
        let other = collection(2, false);
        assert_eq!(
            a.level(other, Some(AccessLevel::Read), Some(AccessLevel::Admin)),
            Some(AccessLevel::Read)
        );
        assert_eq!(a.level(other, None, Some(AccessLevel::Admin)), None);
        assert_eq!(a.level(collection(2, true), None, None), None);
        let reader =
            key_facts(1, false, Some(json!({"read_public": true})), true).actor(crate::now());
        assert_eq!(
            reader.level(collection(2, true), None, None),
            Some(AccessLevel::Read)
        );
        let su = key_facts(1, true, Some(json!({"scoped": true})), false).actor(crate::now());
        assert_eq!(su.level(other, None, None), None);
        assert_eq!(
            su.level(other, None, Some(AccessLevel::Admin)),
            Some(AccessLevel::Admin)
        );
    }

    #[test]
    fn unusable_key_has_nothing() {
        let now = crate::now();
        let mut f = key_facts(1, true, None, false);
        f.user_is_active = false;
        assert_eq!(f.actor(now), Actor::Denied);
        let mut f = key_facts(1, true, None, false);
        f.key.as_mut().unwrap().expires_at = Some(now);
        assert_eq!(f.actor(now), Actor::Denied);
        assert!(Actor::Denied.require_usable().is_err());
    }

    #[test]
    fn principal_ids_names_and_not_found() {
        let key_id = ApiKeyId(uuid::Uuid::from_u128(7));
        let user = Principal::from(UserId(3));
        let key = Principal::from(key_id);
        assert_eq!((user.user_id(), user.api_key_id()), (Some(UserId(3)), None));
        assert_eq!((key.user_id(), key.api_key_id()), (None, Some(key_id)));
        assert_eq!(user.to_string(), "user 3");
        assert_eq!(key.to_string(), format!("api_key {key_id}"));
        assert!(matches!(
            user.not_found(),
            RepoError::NotFound { entity: crate::Entity::User, key, .. } if key == "3"
        ));
        assert!(matches!(
            key.not_found(),
            RepoError::NotFound { entity: crate::Entity::ApiKey, key, .. } if key == key_id.to_string()
        ));
    }

    #[test]
    fn key_expiry_is_exclusive_and_only_creators_of_their_own_cancel() {
        let now = crate::now();
        let mut f = key_facts(1, false, None, false);
        f.key.as_mut().unwrap().expires_at = Some(now + chrono::Duration::microseconds(1));
        let actor = f.actor(now);
        assert!(matches!(
            actor,
            Actor::User {
                user: UserId(1),
                ..
            }
        ));
        assert!(actor.require_usable().is_ok());
        assert!(actor.is_creator_of(UserId(1)));
        assert!(!actor.is_creator_of(UserId(2)));
        let scoped = key_facts(1, false, None, true).actor(now);
        assert!(!scoped.is_creator_of(UserId(1)));
        let mut revoked = key_facts(1, false, None, false);
        revoked.key.as_mut().unwrap().is_active = false;
        assert_eq!(revoked.actor(now), Actor::Denied);
    }

    #[test]
    fn marking() {
        assert_eq!(mark_scoped(None).unwrap(), Some(json!({"scoped": true})));
        assert_eq!(
            mark_scoped(Some(&json!({"a": 1}))).unwrap(),
            Some(json!({"a": 1, "scoped": true}))
        );
        assert_eq!(mark_scoped(Some(&json!({"scoped": true}))).unwrap(), None);
        assert!(mark_scoped(Some(&json!([1]))).is_err());
    }
}
