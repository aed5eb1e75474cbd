//! What both backends share for the `collections` repository.
