//! The bundle of a backend's six repositories and its
//! [`Repositories`](repo_core::Repositories) impls, written once for both backends:
//! [`repository_set!`](crate::repository_set) declares the bundle,
//! [`forward_repositories!`](crate::forward_repositories) lets a handle forward to
//! one.

/// Declares `$name<S>`: one repository of each kind over the connection source `S`,
/// in the fields `users`, `api_keys`, `collections`, `operations`, `documents` and
/// `chunks`, with `new` (every repository over a source made by `src()`) and the
/// [`Repositories`](repo_core::Repositories) impl. The six names are the backend's
/// repository types, each a struct with its source in the field `src`.
///
/// ```ignore
/// repo_diesel::repository_set! {
///     /// Every repository over one connection source.
///     pub(crate) struct PgRepositories {
///         PgUsers, PgApiKeys, PgCollections, PgOperations, PgDocuments, PgChunks
///     }
/// }
/// let tx = PgRepositories::new(|| TxSource { conn, policy });
/// ```
#[macro_export]
macro_rules! repository_set {
    (
        $(#[$doc:meta])*
        $vis:vis struct $name:ident {
            $users:ident, $api_keys:ident, $collections:ident,
            $operations:ident, $documents:ident, $chunks:ident $(,)?
        }
    ) => {
        $(#[$doc])*
        $vis struct $name<S> {
            pub(crate) users: $users<S>,
            pub(crate) api_keys: $api_keys<S>,
            pub(crate) collections: $collections<S>,
            pub(crate) operations: $operations<S>,
            pub(crate) documents: $documents<S>,
            pub(crate) chunks: $chunks<S>,
        }

        impl<S> $name<S> {
            /// Every repository, each over its own source made by `src`.
            pub(crate) fn new(src: impl Fn() -> S) -> Self {
                Self {
                    users: $users { src: src() },
                    api_keys: $api_keys { src: src() },
                    collections: $collections { src: src() },
                    operations: $operations { src: src() },
                    documents: $documents { src: src() },
                    chunks: $chunks { src: src() },
                }
            }
        }

        impl<S> ::repo_core::Repositories for $name<S>
        where
            $users<S>: ::repo_core::UserRepository,
            $api_keys<S>: ::repo_core::ApiKeyRepository,
            $collections<S>: ::repo_core::CollectionRepository,
            $operations<S>: ::repo_core::OperationRepository,
            $documents<S>: ::repo_core::DocumentRepository,
            $chunks<S>: ::repo_core::ChunkRepository,
        {
            fn users(&self) -> &dyn ::repo_core::UserRepository {
                &self.users
            }

            fn api_keys(&self) -> &dyn ::repo_core::ApiKeyRepository {
                &self.api_keys
            }

            fn collections(&self) -> &dyn ::repo_core::CollectionRepository {
                &self.collections
            }

            fn operations(&self) -> &dyn ::repo_core::OperationRepository {
                &self.operations
            }

            fn documents(&self) -> &dyn ::repo_core::DocumentRepository {
                &self.documents
            }

            fn chunks(&self) -> &dyn ::repo_core::ChunkRepository {
                &self.chunks
            }
        }
    };
}

/// Implements [`Repositories`](repo_core::Repositories) for `$type` by forwarding
/// every call to its field `$field`, itself a `Repositories` or a pointer to one
/// (the call auto-derefs): `forward_repositories!(PostgresStore => inner)`.
#[macro_export]
macro_rules! forward_repositories {
    ($type:ty => $field:ident) => {
        impl ::repo_core::Repositories for $type {
            fn users(&self) -> &dyn ::repo_core::UserRepository {
                use ::repo_core::Repositories as _;
                self.$field.users()
            }

            fn api_keys(&self) -> &dyn ::repo_core::ApiKeyRepository {
                use ::repo_core::Repositories as _;
                self.$field.api_keys()
            }

            fn collections(&self) -> &dyn ::repo_core::CollectionRepository {
                use ::repo_core::Repositories as _;
                self.$field.collections()
            }

            fn operations(&self) -> &dyn ::repo_core::OperationRepository {
                use ::repo_core::Repositories as _;
                self.$field.operations()
            }

            fn documents(&self) -> &dyn ::repo_core::DocumentRepository {
                use ::repo_core::Repositories as _;
                self.$field.documents()
            }

            fn chunks(&self) -> &dyn ::repo_core::ChunkRepository {
                use ::repo_core::Repositories as _;
                self.$field.chunks()
            }
        }
    };
}
