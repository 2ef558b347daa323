//! Service → allocation request translation (written by the allocation issue).
