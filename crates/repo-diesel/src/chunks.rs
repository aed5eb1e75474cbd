//! What both backends share for the `chunks` repository.
