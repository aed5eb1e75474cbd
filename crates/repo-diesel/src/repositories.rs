//! [`repositories_of_fields!`](crate::repositories_of_fields): the
//! [`Repositories`](repo_core::Repositories) impl of a backend's bundle of
//! repositories, written once for both backends.

/// Implements [`Repositories`](repo_core::Repositories) for a type whose fields
/// `users`, `api_keys`, `collections`, `operations`, `documents` and `chunks` are
/// the repositories (`repositories_of_fields!(Inner)`), or for a type that forwards
/// every call to its field `$via`, itself a `Repositories`
/// (`repositories_of_fields!(SqliteStore => inner)`; `&*` derefs the field).
#[macro_export]
macro_rules! repositories_of_fields {
    ($type:ty) => {
        $crate::repositories_of_fields!(@impl $type, |s| &s.users, &s.api_keys,
            &s.collections, &s.operations, &s.documents, &s.chunks);
    };
    ($type:ty => $via:ident) => {
        $crate::repositories_of_fields!(@impl $type, |s|
            ::repo_core::Repositories::users(&*s.$via),
            ::repo_core::Repositories::api_keys(&*s.$via),
            ::repo_core::Repositories::collections(&*s.$via),
            ::repo_core::Repositories::operations(&*s.$via),
            ::repo_core::Repositories::documents(&*s.$via),
            ::repo_core::Repositories::chunks(&*s.$via));
    };
    (@impl $type:ty, |$s:ident| $users:expr, $api_keys:expr, $collections:expr,
        $operations:expr, $documents:expr, $chunks:expr) => {
        impl ::repo_core::Repositories for $type {
            fn users(&self) -> &dyn ::repo_core::UserRepository {
                let $s = self;
                $users
            }

            fn api_keys(&self) -> &dyn ::repo_core::ApiKeyRepository {
                let $s = self;
                $api_keys
            }

            fn collections(&self) -> &dyn ::repo_core::CollectionRepository {
                let $s = self;
                $collections
            }

            fn operations(&self) -> &dyn ::repo_core::OperationRepository {
                let $s = self;
                $operations
            }

            fn documents(&self) -> &dyn ::repo_core::DocumentRepository {
                let $s = self;
                $documents
            }

            fn chunks(&self) -> &dyn ::repo_core::ChunkRepository {
                let $s = self;
                $chunks
            }
        }
    };
}
