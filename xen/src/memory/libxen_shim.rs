//! The libxen C interfaces backed by the simulator (being written).
