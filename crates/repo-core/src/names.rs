//! The names errors and enums speak of: [`Entity`] (what a record is) and [`Field`]
//! (which input or column). Their own module, so that both the status enums
//! (`crate::enums`, whose parse errors name a field) and the error type
//! (`crate::error`) use them without depending on each other both ways.

named_enum!(
    /// The kind of record an error is about ([`RepoError::NotFound`](crate::RepoError::NotFound),
    /// [`RepoError::AlreadyExists`](crate::RepoError::AlreadyExists)). The names are stable.
    #[derive(PartialOrd, Ord)]
    #[non_exhaustive]
    Entity {
        /// A user.
        User => "user",
        /// An API key.
        ApiKey => "api_key",
        /// A collection.
        Collection => "collection",
        /// A grant on a collection.
        CollectionPermission => "collection_permission",
        /// An operation.
        Operation => "operation",
        /// A document.
        Document => "document",
        /// A chunk.
        Chunk => "chunk",
        /// A row the database reported missing without saying which (PostgreSQL
        /// "query returned no rows" outside the explicit lookups).
        Row => "row",
        /// The row a foreign key points to, when a foreign-key violation is not caught
        /// by the explicit checks (the database does not say which).
        ReferencedRow => "referenced_row",
    }
);

named_enum!(
    /// The input field an error names ([`RepoError::Validation`](crate::RepoError::Validation),
    /// [`RepoError::AlreadyExists`](crate::RepoError::AlreadyExists)): a field of an input type, spelled like its
    /// column, or one of the few names below for what is not a column (`api_key`,
    /// `api_keys`, `documents`, `chunks`, `cursor`, `grantee`, `write_position`,
    /// `value`). The names are stable.
    #[derive(PartialOrd, Ord)]
    #[non_exhaustive]
    Field {
        /// An id.
        Id => "id",
        /// `User::username`.
        Username => "username",
        /// `User::email`.
        Email => "email",
        /// `User::full_name`.
        FullName => "full_name",
        /// `User::hashed_password`.
        HashedPassword => "hashed_password",
        /// `is_active`.
        IsActive => "is_active",
        /// `User::is_superuser`.
        IsSuperuser => "is_superuser",
        /// `created_at`.
        CreatedAt => "created_at",
        /// `updated_at`.
        UpdatedAt => "updated_at",
        /// `User::last_login`.
        LastLogin => "last_login",
        /// `user_id`.
        UserId => "user_id",
        /// A name (of an API key or a collection).
        Name => "name",
        /// The case-folded copy of an API key's name that makes names unique per
        /// user (a stored column; checked when data is copied between databases).
        NameFolded => "name_folded",
        /// `ApiKey::key_prefix`.
        KeyPrefix => "key_prefix",
        /// `ApiKey::key_hash`.
        KeyHash => "key_hash",
        /// `ApiKey::permissions`.
        Permissions => "permissions",
        /// `ApiKey::expires_at`.
        ExpiresAt => "expires_at",
        /// `ApiKey::last_used_at`.
        LastUsedAt => "last_used_at",
        /// An API-key secret given to `verify` (never shown).
        ApiKey => "api_key",
        /// The number of a user's active API keys (the per-user limit).
        ApiKeys => "api_keys",
        /// `Collection::description`.
        Description => "description",
        /// `Collection::owner_id`.
        OwnerId => "owner_id",
        /// `Collection::vector_store_name`.
        VectorStoreName => "vector_store_name",
        /// `Collection::embedding_model`.
        EmbeddingModel => "embedding_model",
        /// `Collection::quantization`.
        Quantization => "quantization",
        /// `Collection::chunk_size`.
        ChunkSize => "chunk_size",
        /// `Collection::chunk_overlap`.
        ChunkOverlap => "chunk_overlap",
        /// `Collection::chunking_strategy`.
        ChunkingStrategy => "chunking_strategy",
        /// `Collection::chunking_config`.
        ChunkingConfig => "chunking_config",
        /// `Collection::is_public`.
        IsPublic => "is_public",
        /// `meta`.
        Meta => "meta",
        /// `status`.
        Status => "status",
        /// `Collection::status_message`.
        StatusMessage => "status_message",
        /// `Collection::document_count`.
        DocumentCount => "document_count",
        /// `Collection::vector_count`.
        VectorCount => "vector_count",
        /// `Collection::total_size_bytes`.
        TotalSizeBytes => "total_size_bytes",
        /// `Collection::sync_mode`.
        SyncMode => "sync_mode",
        /// `Collection::sync_interval_minutes`.
        SyncIntervalMinutes => "sync_interval_minutes",
        /// `Collection::sync_paused_at`.
        SyncPausedAt => "sync_paused_at",
        /// `Collection::sync_next_run_at`.
        SyncNextRunAt => "sync_next_run_at",
        /// `Collection::sync_last_run_started_at`.
        SyncLastRunStartedAt => "sync_last_run_started_at",
        /// `Collection::sync_last_run_completed_at`.
        SyncLastRunCompletedAt => "sync_last_run_completed_at",
        /// `Collection::sync_last_run_status`.
        SyncLastRunStatus => "sync_last_run_status",
        /// `Collection::sync_last_error`.
        SyncLastError => "sync_last_error",
        /// `collection_id`.
        CollectionId => "collection_id",
        /// `CollectionPermission::api_key_id`.
        ApiKeyId => "api_key_id",
        /// `CollectionPermission::permission`.
        Permission => "permission",
        /// Who a grant is for (exactly one of a user or an API key).
        Grantee => "grantee",
        /// `Operation::uuid`.
        Uuid => "uuid",
        /// `Operation::kind`.
        Kind => "kind",
        /// `Operation::task_id`.
        TaskId => "task_id",
        /// `NewOperation::idempotency_key`.
        IdempotencyKey => "idempotency_key",
        /// `Operation::config`.
        Config => "config",
        /// `error_message`.
        ErrorMessage => "error_message",
        /// `Operation::started_at`.
        StartedAt => "started_at",
        /// `Operation::completed_at`.
        CompletedAt => "completed_at",
        /// `Document::file_path`.
        FilePath => "file_path",
        /// `Document::file_name`.
        FileName => "file_name",
        /// `Document::file_size`.
        FileSize => "file_size",
        /// `Document::mime_type`.
        MimeType => "mime_type",
        /// `Document::content_hash`.
        ContentHash => "content_hash",
        /// `Document::uri`.
        Uri => "uri",
        /// `Document::error_category`.
        ErrorCategory => "error_category",
        /// `Document::retry_count`.
        RetryCount => "retry_count",
        /// `Document::chunk_count`.
        ChunkCount => "chunk_count",
        /// `Document::last_seen_at`.
        LastSeenAt => "last_seen_at",
        /// `Document::is_stale`.
        IsStale => "is_stale",
        /// The size of a document batch.
        Documents => "documents",
        /// `document_id`.
        DocumentId => "document_id",
        /// `Chunk::chunk_index`.
        ChunkIndex => "chunk_index",
        /// `Chunk::content`.
        Content => "content",
        /// `Chunk::start_offset`.
        StartOffset => "start_offset",
        /// `Chunk::end_offset`.
        EndOffset => "end_offset",
        /// `Chunk::token_count`.
        TokenCount => "token_count",
        /// `Chunk::embedding_vector_id`.
        EmbeddingVectorId => "embedding_vector_id",
        /// The size of a chunk batch.
        Chunks => "chunks",
        /// A page cursor.
        Cursor => "cursor",
        /// A replica write-position token.
        WritePosition => "write_position",
        /// A value the database refused without naming its column.
        Value => "value",
    }
);
