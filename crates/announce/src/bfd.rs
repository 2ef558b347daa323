//! (written by the issue that builds this module)
