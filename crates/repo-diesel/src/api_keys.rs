//! What both backends share for the `api_keys` repository.
