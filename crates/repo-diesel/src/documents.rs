//! What both backends share for the `documents` repository.
