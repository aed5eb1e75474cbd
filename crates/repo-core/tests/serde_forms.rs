//! Request bodies deserialize into the input types (with the documented defaults), and
//! output types serialize without any secret or hash.

use repo_core::*;
use serde_json::json;

const HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

fn user() -> User {
    let now = now();
    User {
        id: UserId(7),
        username: "ada".into(),
        email: "ada@example.com".into(),
        full_name: None,
        hashed_password: HASH.into(),
        is_active: true,
        is_superuser: false,
        created_at: now,
        updated_at: now,
        last_login: None,
    }
}

#[test]
fn outputs_never_serialize_a_password_hash_or_key_secret() {
    let text = serde_json::to_string(&user()).unwrap();
    assert!(text.contains("\"username\":\"ada\""), "{text}");
    assert!(!text.contains("hashed_password"), "{text}");
    assert!(!text.contains("argon2"), "{text}");

    let page = Page {
        items: vec![user()],
        total: 1,
    };
    let text = serde_json::to_string(&page).unwrap();
    assert!(!text.contains("argon2"), "{text}");

    let prepared = NewApiKey::new(UserId(7), "ci")
        .prepare(&ApiKeyPolicy::default())
        .unwrap();
    let verified = VerifiedKey {
        key: prepared.key.clone(),
        user: user(),
    };
    let text = serde_json::to_string(&verified).unwrap();
    assert!(text.contains(&prepared.key.key_prefix), "{text}");
    assert!(
        !text.contains(&prepared.key_hash),
        "the key's hash leaked: {text}"
    );
    assert!(
        !text.contains(prepared.secret.expose()),
        "the secret leaked: {text}"
    );
    assert!(!text.contains("argon2"), "{text}");
    // `ApiKeySecret` and `CreatedApiKey` are not `Serialize` at all: see their
    // `compile_fail` doc tests.
}

#[test]
fn new_user_from_json_takes_the_defaults_and_refuses_unknown_fields() {
    let body = json!({"username": "ada", "email": "ada@example.com", "hashed_password": HASH});
    let new: NewUser = serde_json::from_value(body).unwrap();
    let expected = NewUser::new("ada", "ada@example.com", HASH);
    assert_eq!(
        (
            new.username,
            new.email,
            new.full_name,
            new.is_active,
            new.is_superuser
        ),
        (
            expected.username,
            expected.email,
            expected.full_name,
            expected.is_active,
            expected.is_superuser
        )
    );
    let typo =
        json!({"username": "a", "email": "a@x.io", "hashed_password": HASH, "is_admin": true});
    let err = serde_json::from_value::<NewUser>(typo).unwrap_err();
    assert!(err.to_string().contains("is_admin"), "{err}");
    assert!(!err.to_string().contains("argon2"), "{err}");
}

#[test]
fn patches_tell_absent_from_null() {
    let keep: UserPatch = serde_json::from_value(json!({"email": "new@example.com"})).unwrap();
    assert_eq!(keep.email.as_deref(), Some("new@example.com"));
    assert_eq!(keep.full_name, None, "absent leaves it");
    let clear: UserPatch = serde_json::from_value(json!({"full_name": null})).unwrap();
    assert_eq!(clear.full_name, Some(None), "null clears it");
    let set: UserPatch = serde_json::from_value(json!({"full_name": "Ada"})).unwrap();
    assert_eq!(set.full_name, Some(Some("Ada".into())));
    assert!(serde_json::from_value::<UserPatch>(json!({}))
        .unwrap()
        .is_empty());

    let patch: CollectionPatch = serde_json::from_value(json!({
        "description": null, "chunk_size": 500, "sync_mode": "continuous",
        "sync_interval_minutes": 30, "quantization": "int8"
    }))
    .unwrap();
    assert_eq!(
        patch,
        CollectionPatch {
            description: Some(None),
            chunk_size: Some(500),
            sync_mode: Some(SyncMode::Continuous),
            sync_interval_minutes: Some(Some(30)),
            quantization: Some(Quantization::Int8),
            ..CollectionPatch::default()
        }
    );
    assert!(serde_json::from_value::<CollectionPatch>(json!({"name": "x"})).is_err());
}

#[test]
fn inputs_from_minimal_json_equal_their_constructors() {
    let owner = UserId(3);
    let collection = CollectionId(uuid::Uuid::new_v4());
    let document = DocumentId(uuid::Uuid::new_v4());

    let c: NewCollection = serde_json::from_value(json!({"name": "docs", "owner_id": 3})).unwrap();
    assert_eq!(c, NewCollection::new("docs", owner));

    let k: NewApiKey = serde_json::from_value(json!({"user_id": 3, "name": "ci"})).unwrap();
    assert_eq!(k, NewApiKey::new(owner, "ci"));
    let k: NewApiKey =
        serde_json::from_value(json!({"user_id": 3, "name": "ci", "expiry": {"days": 30}}))
            .unwrap();
    assert_eq!(k.expiry, KeyExpiry::Days(30));

    let hash = "ab".repeat(32);
    let d: NewDocument = serde_json::from_value(json!({
        "collection_id": collection, "file_path": "/a/b.md", "file_name": "b.md",
        "file_size": 12, "content_hash": hash,
    }))
    .unwrap();
    assert_eq!(
        d,
        NewDocument::new(collection, "/a/b.md", "b.md", 12, &hash)
    );

    let ch: NewChunk = serde_json::from_value(
        json!({"document_id": document, "chunk_index": 0, "content": "hello"}),
    )
    .unwrap();
    assert_eq!(ch, NewChunk::new(document, 0, "hello"));

    let op: NewOperation = serde_json::from_value(json!({
        "collection_id": collection, "user_id": 3, "kind": "index", "config": {"source": "/docs"}
    }))
    .unwrap();
    assert_eq!(
        op,
        NewOperation::new(
            collection,
            owner,
            OperationKind::Index,
            json!({"source": "/docs"})
        )
    );

    let page: PageRequest = serde_json::from_value(json!({"limit": 20})).unwrap();
    assert_eq!(page, PageRequest::new(0, 20));

    let f: OperationFilter =
        serde_json::from_value(json!({"statuses": ["pending", "processing"]})).unwrap();
    assert_eq!(
        f.statuses,
        vec![OperationStatus::Pending, OperationStatus::Processing]
    );
    let f: UserFilter = serde_json::from_value(json!({"is_active": true})).unwrap();
    assert_eq!(f.is_active, Some(true));
    let f: DocumentFilter = serde_json::from_value(json!({"is_stale": false})).unwrap();
    assert_eq!(f.is_stale, Some(false));

    let s: CollectionStats = serde_json::from_value(
        json!({"document_count": 1, "vector_count": 2, "total_size_bytes": 3}),
    )
    .unwrap();
    assert_eq!(s.vector_count, 2);
    let u: DocumentStatusUpdate = serde_json::from_value(
        json!({"status": "failed", "error_message": "boom", "error_category": null, "chunk_count": null}),
    )
    .unwrap();
    assert_eq!(u.status, DocumentStatus::Failed);
    let mode: DeleteMode = serde_json::from_value(json!("cascade")).unwrap();
    assert_eq!(mode, DeleteMode::Cascade);
}

#[test]
fn document_builder_names_every_field() {
    let collection = CollectionId(uuid::Uuid::new_v4());
    let doc = NewDocument::builder(collection)
        .file_path("/src/notes/today.txt")
        .file_size(5)
        .content_hash("cd".repeat(32))
        .uri("file:///src/notes/today.txt")
        .meta(json!({"lang": "en"}))
        .build();
    assert_eq!(doc.file_name, "today.txt");
    assert_eq!(doc.file_path, "/src/notes/today.txt");
    assert_eq!(doc.uri.as_deref(), Some("file:///src/notes/today.txt"));
    assert_eq!(doc.meta, json!({"lang": "en"}));
    assert!(doc.prepare().is_ok());
    let named = NewDocument::builder(collection)
        .file_path("/x/y")
        .file_name("z")
        .build();
    assert_eq!(named.file_name, "z", "an explicit name wins");
    // A required field left unset is refused by name when registered.
    let err = NewDocument::builder(collection)
        .file_size(1)
        .content_hash("cd".repeat(32))
        .build()
        .prepare()
        .unwrap_err();
    assert!(err.to_string().contains("file_path"), "{err}");
}
