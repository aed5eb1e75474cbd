//! API keys: secrets shown once, only their SHA-256 stored; and their rules, decided
//! here for both backends: when a key is usable ([`UsableKeyCondition`],
//! [`KeyUseFacts::is_usable_at`]), what verify returns ([`VerifiedKey::decide`]), when
//! verify stamps `last_used_at` again ([`ApiKeyPolicy::restamp_due`]) and the limit of
//! active keys per user ([`ApiKeyPolicy::check_active_limit`]).

use crate::error::{Field, RepoError, RepoResult};
use crate::ids::{ApiKeyId, UserId};
use crate::time::{self, Timestamp};
use crate::user::User;
use crate::validate;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;

/// Prefix of every secret.
pub const SECRET_PREFIX: &str = "smtk_";
/// Length of a secret: `smtk_` + 8 hex + `_` + 43 base64url characters.
pub const SECRET_LEN: usize = 5 + 8 + 1 + 43;
/// Length of the displayable prefix (`smtk_` + 8 hex).
pub const DISPLAY_PREFIX_LEN: usize = 5 + 8;

/// A stored API key. It never holds the secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Id.
    pub id: ApiKeyId,
    /// Owner.
    pub user_id: UserId,
    /// Name, unique per user regardless of case.
    pub name: String,
    /// The displayable start of the secret, e.g. `smtk_1a2b3c4d`.
    pub key_prefix: String,
    /// Free-form permissions document.
    pub permissions: Option<Value>,
    /// `false` once revoked.
    pub is_active: bool,
    /// When the key stops working (`None`: never).
    pub expires_at: Option<Timestamp>,
    /// Last successful verification.
    pub last_used_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
}

impl ApiKey {
    /// Whether the key itself is usable at `at`: the conditions of the usable-key rule
    /// that read only the key ([`UsableKeyCondition::reads_only_the_key`]), i.e.
    /// active and not expired. This is what counts toward the per-user limit.
    pub fn is_usable_at(&self, at: Timestamp) -> bool {
        self.use_facts(true).holds_key_conditions(at)
    }

    /// The facts of the usable-key rule for this key, whose user is active or not.
    pub fn use_facts(&self, user_is_active: bool) -> KeyUseFacts {
        KeyUseFacts {
            key_is_active: self.is_active,
            expires_at: self.expires_at,
            user_is_active,
        }
    }
}

/// One condition of the usable-key rule: a key is usable (it verifies, and acts for its
/// user) when every condition of [`UsableKeyCondition::ALL`] holds.
///
/// The rule is data so that a backend that must apply it inside a statement (the
/// count of active keys; PostgreSQL's verify, which stamps `last_used_at` in the same
/// statement as its read) writes its SQL from this list, with an exhaustive `match`:
/// a condition added here fails to compile there until it has its SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsableKeyCondition {
    /// The key is not revoked (`api_keys.is_active`).
    KeyActive,
    /// The key never expires, or expires after the time of the check
    /// (`api_keys.expires_at IS NULL OR api_keys.expires_at > now`).
    KeyUnexpired,
    /// The key's user is active (`users.is_active`).
    UserActive,
}

impl UsableKeyCondition {
    /// Every condition of the rule.
    pub const ALL: [UsableKeyCondition; 3] =
        [Self::KeyActive, Self::KeyUnexpired, Self::UserActive];

    /// Whether the condition reads only the key's own row (not its user's).
    pub fn reads_only_the_key(self) -> bool {
        !matches!(self, Self::UserActive)
    }

    /// Whether the condition holds for `facts` at `at`.
    pub fn holds(self, facts: &KeyUseFacts, at: Timestamp) -> bool {
        match self {
            Self::KeyActive => facts.key_is_active,
            Self::KeyUnexpired => facts.expires_at.is_none_or(|exp| exp > at),
            Self::UserActive => facts.user_is_active,
        }
    }
}

/// What the usable-key rule reads about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUseFacts {
    /// `api_keys.is_active`.
    pub key_is_active: bool,
    /// `api_keys.expires_at`.
    pub expires_at: Option<Timestamp>,
    /// `users.is_active` of the key's user.
    pub user_is_active: bool,
}

impl KeyUseFacts {
    /// The usable-key rule: every [`UsableKeyCondition`] holds at `at`.
    pub fn is_usable_at(&self, at: Timestamp) -> bool {
        UsableKeyCondition::ALL.iter().all(|c| c.holds(self, at))
    }

    fn holds_key_conditions(&self, at: Timestamp) -> bool {
        UsableKeyCondition::ALL
            .iter()
            .filter(|c| c.reads_only_the_key())
            .all(|c| c.holds(self, at))
    }
}

/// A secret API key. `Debug` and `Display` show only its displayable prefix.
///
/// It is deliberately not `Serialize`, so that no response body or log record carries
/// it by accident: hand it to the caller once with [`expose`](Self::expose).
///
/// ```compile_fail
/// fn serializable<T: serde::Serialize>() {}
/// serializable::<repo_core::ApiKeySecret>();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// Draws a new secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut head = [0u8; 4];
        let mut body = [0u8; 32];
        rng.fill_bytes(&mut head);
        rng.fill_bytes(&mut body);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body);
        Self(format!("{SECRET_PREFIX}{}_{body}", hex::encode(head)))
    }

    /// Checks the format without touching the database; the error never echoes the value.
    pub fn parse(secret: &str) -> RepoResult<Self> {
        let malformed = || RepoError::validation(Field::ApiKey, "malformed API key");
        if secret.len() != SECRET_LEN || !secret.starts_with(SECRET_PREFIX) {
            return Err(malformed());
        }
        let bytes = secret.as_bytes();
        let hex_ok = bytes[5..13]
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        let body_ok = bytes[14..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
        if !hex_ok || bytes[13] != b'_' || !body_ok {
            return Err(malformed());
        }
        Ok(Self(secret.to_owned()))
    }

    /// The whole secret, to hand to the key's owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The displayable start, stored as `key_prefix`.
    pub fn display_prefix(&self) -> &str {
        &self.0[..DISPLAY_PREFIX_LEN]
    }

    /// Lowercase hex SHA-256 of the whole secret: the only form that is stored.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…)", self.display_prefix())
    }
}

impl fmt::Display for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.display_prefix())
    }
}

/// When a new key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyExpiry {
    /// The policy's default (365 days).
    #[default]
    Default,
    /// After this many days (1 ..= the policy's maximum).
    Days(u32),
    /// After this duration (at least one second, at most the policy's maximum): for
    /// short-lived keys, such as a CI job's.
    After(std::time::Duration),
    /// Never; only when asked for explicitly.
    Never,
}

/// Limits applied to API keys; part of the store configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKeyPolicy {
    /// Active, unexpired keys a user may hold (default 20).
    pub max_active_per_user: u32,
    /// Expiry when none is given (default 365 days).
    pub default_expiry_days: u32,
    /// Longest expiry accepted (default 3650 days).
    pub max_expiry_days: u32,
    /// How stale `last_used_at` may get before [`ApiKeyRepository::verify`] writes it
    /// again (`API_KEY_LAST_USED_GRANULARITY_S`, default 60 s; zero writes it on every
    /// call). Within it, verify is a read: `last_used_at` lags the last use by up to
    /// this much.
    pub last_used_granularity: std::time::Duration,
}

impl Default for ApiKeyPolicy {
    fn default() -> Self {
        Self {
            max_active_per_user: 20,
            default_expiry_days: 365,
            max_expiry_days: 3650,
            last_used_granularity: std::time::Duration::from_secs(60),
        }
    }
}

impl ApiKeyPolicy {
    /// Whether a verify at `now` of a key last stamped at `last_used_at` writes
    /// `last_used_at = now` again: never stamped, or stamped at or before
    /// [`restamp_at_or_before`](Self::restamp_at_or_before).
    pub fn restamp_due(&self, last_used_at: Option<Timestamp>, now: Timestamp) -> bool {
        let before = self.restamp_at_or_before(now);
        last_used_at.is_none_or(|used| used <= before)
    }

    /// The per-user limit: with `active` usable keys already, a new key is
    /// `Validation { api_keys }` once `active` reaches
    /// [`max_active_per_user`](Self::max_active_per_user).
    pub fn check_active_limit(&self, active: u64) -> RepoResult<()> {
        if active >= u64::from(self.max_active_per_user) {
            return Err(RepoError::validation(
                Field::ApiKeys,
                format!(
                    "a user may hold at most {} active API keys",
                    self.max_active_per_user
                ),
            ));
        }
        Ok(())
    }

    /// The `last_used_at` at or before which a verify at `now` stamps the key again
    /// (`now` minus [`last_used_granularity`](Self::last_used_granularity)): a key
    /// whose stamp is `NULL` or not after it gets `last_used_at = now`.
    pub fn restamp_at_or_before(&self, now: Timestamp) -> Timestamp {
        chrono::Duration::from_std(self.last_used_granularity)
            .ok()
            .and_then(|g| now.checked_sub_signed(g))
            .unwrap_or(now)
    }

    /// The expiry time of a key created at `now`.
    pub fn expires_at(&self, expiry: KeyExpiry, now: Timestamp) -> RepoResult<Option<Timestamp>> {
        let days = match expiry {
            KeyExpiry::Never => return Ok(None),
            KeyExpiry::Default => self.default_expiry_days,
            KeyExpiry::Days(d) => d,
            KeyExpiry::After(duration) => {
                let max = std::time::Duration::from_secs(u64::from(self.max_expiry_days) * 86_400);
                if duration < std::time::Duration::from_secs(1) || duration > max {
                    return Err(RepoError::validation(
                        Field::ExpiresAt,
                        format!(
                            "expiry must be between 1 second and {} days",
                            self.max_expiry_days
                        ),
                    ));
                }
                let delta = chrono::Duration::from_std(duration).map_err(|_| {
                    RepoError::validation(Field::ExpiresAt, "expiry is too far away")
                })?;
                return Ok(Some(time::truncate_micros(now + delta)));
            }
        };
        if days == 0 || days > self.max_expiry_days {
            return Err(RepoError::validation(
                Field::ExpiresAt,
                format!("expiry must be between 1 and {} days", self.max_expiry_days),
            ));
        }
        Ok(Some(now + chrono::Duration::days(i64::from(days))))
    }
}

/// Input for [`ApiKeyRepository::create`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// Owner.
    pub user_id: UserId,
    /// Name (unique per user, any case).
    pub name: String,
    /// Optional permissions document.
    #[serde(default)]
    pub permissions: Option<Value>,
    /// Expiry rule.
    #[serde(default)]
    pub expiry: KeyExpiry,
}

impl NewApiKey {
    /// A key with the default expiry and no permissions document.
    pub fn new(user_id: UserId, name: impl Into<String>) -> Self {
        Self {
            user_id,
            name: name.into(),
            permissions: None,
            expiry: KeyExpiry::Default,
        }
    }
}

/// A key ready to insert: validated, with its secret drawn and hashed.
pub struct PreparedApiKey {
    /// The row to store.
    pub key: ApiKey,
    /// Lowercase name used for the per-user uniqueness rule.
    pub name_folded: String,
    /// SHA-256 hex of the secret.
    pub key_hash: String,
    /// The secret, returned to the caller once.
    pub secret: ApiKeySecret,
}

impl fmt::Debug for PreparedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedApiKey")
            .field("key", &self.key)
            .field("key_hash", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl NewApiKey {
    /// Validates the input under `policy` and draws the secret.
    pub fn prepare(&self, policy: &ApiKeyPolicy) -> RepoResult<PreparedApiKey> {
        let name = validate::api_key_name(&self.name)?;
        if let Some(p) = &self.permissions {
            validate::json(Field::Permissions, p)?;
        }
        let now = time::now();
        let expires_at = policy.expires_at(self.expiry, now)?;
        let secret = ApiKeySecret::generate();
        Ok(PreparedApiKey {
            name_folded: fold_key_name(&name),
            key: ApiKey {
                id: ApiKeyId::new(),
                user_id: self.user_id,
                name,
                key_prefix: secret.display_prefix().to_owned(),
                permissions: self.permissions.clone(),
                is_active: true,
                expires_at,
                last_used_at: None,
                created_at: now,
            },
            key_hash: secret.hash(),
            secret,
        })
    }
}

/// The case-folded form of a key name used by the uniqueness rule (Unicode-aware,
/// computed here so both databases agree).
pub fn fold_key_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// What [`ApiKeyRepository::create`] returns: the record and the secret, once.
///
/// Not `Serialize`, because it holds the secret: serialize `key` and send
/// `secret.expose()` explicitly.
///
/// ```compile_fail
/// fn serializable<T: serde::Serialize>() {}
/// serializable::<repo_core::CreatedApiKey>();
/// ```
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// The secret; it cannot be read back later.
    pub secret: ApiKeySecret,
}

/// A successfully verified key and its user.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedKey {
    /// The key (with `last_used_at` just set).
    pub key: ApiKey,
    /// Its active owner.
    pub user: User,
}

impl VerifiedKey {
    /// The verify decision on the key a secret's hash found and its user: `Some` when
    /// the usable-key rule holds at `at` ([`KeyUseFacts::is_usable_at`]).
    pub fn decide(key: ApiKey, user: User, at: Timestamp) -> Option<VerifiedKey> {
        key.use_facts(user.is_active)
            .is_usable_at(at)
            .then_some(VerifiedKey { key, user })
    }
}

/// API keys.
pub trait ApiKeyRepository: Send + Sync {
    /// Creates a key and returns it with its secret. The user's
    /// `max_active_per_user + 1`-th active key is `Validation`; a duplicate name is
    /// `AlreadyExists { field: Field::Name }`; an unknown user is `NotFound`.
    fn create(&self, new: &NewApiKey) -> RepoResult<CreatedApiKey>;
    /// The key with this id, or `NotFound`.
    fn get(&self, id: ApiKeyId) -> RepoResult<ApiKey>;
    /// The user's keys, newest first (never hashes or secrets).
    fn list_for_user(&self, user_id: UserId) -> RepoResult<Vec<ApiKey>>;
    /// Checks a secret: `Ok(Some)` only when the hash matches, the key is active and
    /// unexpired and its user active, and then records `last_used_at` if the stored
    /// stamp is older than [`ApiKeyPolicy::last_used_granularity`] (so on a busy key
    /// verify is a read, and `last_used_at` may lag by up to that much). `Ok(None)` for
    /// any other well-formed secret; a malformed one is `Validation` before any query.
    fn verify(&self, secret: &str) -> RepoResult<Option<VerifiedKey>>;
    /// Soft revoke (`is_active = false`).
    fn revoke(&self, id: ApiKeyId) -> RepoResult<ApiKey>;
    /// Hard delete.
    fn delete(&self, id: ApiKeyId) -> RepoResult<()>;
    /// Deletes keys whose expiry has passed; returns how many.
    fn purge_expired(&self) -> RepoResult<u64>;
    /// Active, unexpired keys of a user.
    fn count_active(&self, user_id: UserId) -> RepoResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key named "ci" of user 1, prepared under the default policy.
    fn prepared_key() -> PreparedApiKey {
        NewApiKey::new(UserId(1), "ci")
            .prepare(&ApiKeyPolicy::default())
            .expect("a valid key")
    }

    #[test]
    fn secret_format() {
        let s = ApiKeySecret::generate();
        assert_eq!(s.expose().len(), SECRET_LEN);
        assert!(ApiKeySecret::parse(s.expose()).is_ok());
        assert_eq!(s.hash().len(), 64);
        assert!(!format!("{s:?}").contains(&s.expose()[14..]));
        assert!(ApiKeySecret::parse("smtk_short").is_err());
        let mut bad = s.expose().to_owned();
        bad.replace_range(5..6, "Z");
        assert!(ApiKeySecret::parse(&bad).is_err());
    }

    /// Each part of the format checked on its own: the prefix is `smtk_` and 8
    /// lowercase hex digits, then `_`, then 43 base64url characters (`-` and `_`
    /// included).
    #[test]
    fn secret_parts_are_each_checked() {
        let s = ApiKeySecret::generate();
        assert_eq!(DISPLAY_PREFIX_LEN, 13);
        assert_eq!(s.display_prefix(), &s.expose()[..13]);
        let body = |b: &str| format!("smtk_0123abcd_{b}");
        assert!(ApiKeySecret::parse(&body(&format!("-_{}", "A".repeat(41)))).is_ok());
        assert!(ApiKeySecret::parse(&body(&format!("_-{}", "z".repeat(41)))).is_ok());
        for bad in [
            body(&format!(".{}", "A".repeat(42))),
            format!("smtk_0123abcd-{}", "A".repeat(43)),
            format!("smtk_0123abcg_{}", "A".repeat(43)),
            format!("smtk-0123abcd_{}", "A".repeat(43)),
            body(&"A".repeat(42)),
        ] {
            assert!(ApiKeySecret::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_names_fold_trimmed_and_lowercased() {
        assert_eq!(fold_key_name("  CI Key "), "ci key");
        assert_eq!(fold_key_name("ÉTÉ"), "été");
    }

    #[test]
    fn a_key_is_verified_only_when_usable_and_its_user_active() {
        let now = time::now();
        let key = prepared_key().key;
        let user = |is_active| User {
            id: UserId(1),
            username: "u".into(),
            email: "u@example.com".into(),
            full_name: None,
            hashed_password: "$argon2id$v=19$salt$hash".into(),
            is_active,
            is_superuser: false,
            created_at: now,
            updated_at: now,
            last_login: None,
        };
        let verified = VerifiedKey::decide(key.clone(), user(true), now).expect("usable");
        assert_eq!((verified.key.id, verified.user.id), (key.id, UserId(1)));
        assert!(VerifiedKey::decide(key.clone(), user(false), now).is_none());
        let revoked = ApiKey {
            is_active: false,
            ..key
        };
        assert!(VerifiedKey::decide(revoked, user(true), now).is_none());
    }

    #[test]
    fn expiry_bounds() {
        let p = ApiKeyPolicy::default();
        let now = time::now();
        let max = u64::from(p.max_expiry_days) * 86_400;
        let after =
            |secs| p.expires_at(KeyExpiry::After(std::time::Duration::from_secs(secs)), now);
        assert!(after(1).is_ok());
        assert_eq!(
            after(max).unwrap(),
            Some(now + chrono::Duration::days(i64::from(p.max_expiry_days)))
        );
        assert!(after(max + 1).is_err());
        assert!(p
            .expires_at(KeyExpiry::Days(p.max_expiry_days), now)
            .is_ok());
        assert!(p
            .expires_at(KeyExpiry::Days(p.max_expiry_days + 1), now)
            .is_err());
        assert!(p.expires_at(KeyExpiry::Days(1), now).is_ok());
    }

    #[test]
    fn secret_and_prepared_key_show_their_prefix_only() {
        let s = ApiKeySecret::generate();
        let prefix = s.display_prefix().to_owned();
        assert_eq!(format!("{s:?}"), format!("ApiKeySecret({prefix}…)"));
        assert_eq!(format!("{s}"), format!("{prefix}…"));
        let prepared = prepared_key();
        let shown = format!("{prepared:?}");
        assert!(shown.starts_with("PreparedApiKey {"), "{shown}");
        assert!(shown.contains("key_hash: \"<redacted>\""), "{shown}");
        assert!(shown.contains(&prepared.key.key_prefix), "{shown}");
        assert!(!shown.contains(&prepared.key_hash), "{shown}");
        assert!(!shown.contains(prepared.secret.expose()), "{shown}");
    }

    #[test]
    fn a_key_is_usable_while_active_and_unexpired() {
        let now = time::now();
        let key = prepared_key().key;
        let with = |is_active, expires_at| ApiKey {
            is_active,
            expires_at,
            ..key.clone()
        };
        let later = Some(now + chrono::Duration::microseconds(1));
        assert!(with(true, None).is_usable_at(now));
        assert!(with(true, later).is_usable_at(now));
        assert!(!with(true, Some(now)).is_usable_at(now), "expires at now");
        assert!(!with(false, None).is_usable_at(now), "revoked");
        assert!(!with(false, later).is_usable_at(now), "revoked, unexpired");
    }

    #[test]
    fn usable_key_rule() {
        let now = time::now();
        let facts = |key_is_active, expires_at, user_is_active| KeyUseFacts {
            key_is_active,
            expires_at,
            user_is_active,
        };
        let later = Some(now + chrono::Duration::microseconds(1));
        assert!(facts(true, None, true).is_usable_at(now));
        assert!(facts(true, later, true).is_usable_at(now));
        assert!(
            !facts(true, Some(now), true).is_usable_at(now),
            "expires at now"
        );
        assert!(!facts(false, None, true).is_usable_at(now), "revoked");
        assert!(!facts(true, None, false).is_usable_at(now), "inactive user");
        assert!(facts(true, None, false).holds_key_conditions(now));
    }

    #[test]
    fn restamp_and_limit() {
        let p = ApiKeyPolicy::default();
        let now = time::now();
        assert!(p.restamp_due(None, now));
        assert!(p.restamp_due(Some(now - chrono::Duration::seconds(60)), now));
        assert!(!p.restamp_due(Some(now - chrono::Duration::seconds(59)), now));
        assert!(p.check_active_limit(19).is_ok());
        assert!(p.check_active_limit(20).is_err());
    }

    #[test]
    fn expiry_policy() {
        let p = ApiKeyPolicy::default();
        let now = time::now();
        assert_eq!(
            p.expires_at(KeyExpiry::Default, now).unwrap(),
            Some(now + chrono::Duration::days(365))
        );
        assert!(p.expires_at(KeyExpiry::Days(3651), now).is_err());
        assert!(p.expires_at(KeyExpiry::Days(0), now).is_err());
        assert_eq!(p.expires_at(KeyExpiry::Never, now).unwrap(), None);
        let short = std::time::Duration::from_millis(1500);
        assert_eq!(
            p.expires_at(KeyExpiry::After(short), now).unwrap(),
            Some(now + chrono::Duration::milliseconds(1500))
        );
        assert!(p
            .expires_at(KeyExpiry::After(std::time::Duration::ZERO), now)
            .is_err());
    }
}
