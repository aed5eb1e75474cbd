//! What both backends share for the `operations` repository.
