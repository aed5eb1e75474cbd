//! What both backends share for the `users` repository.
