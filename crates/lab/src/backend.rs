//! The tiny per-node backend: answers every request with its node name (UDP and HTTP).
