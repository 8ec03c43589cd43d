//! Xen system time from pvclock (`vcpu_info.time`), without a hypercall.

use core::mem::offset_of;
use core::sync::atomic::Ordering;

use super::cpu;
use crate::abi::shared_info::{VcpuInfo, VcpuTimeInfo};
use crate::memory::{rmb, SharedMem};

const T: usize = offset_of!(VcpuInfo, time);

/// Nanoseconds of Xen system time, from vCPU 0's time info in `shared`.
pub fn now_ns(shared: &SharedMem) -> u64 {
    loop {
        let v1 = shared.load_u32(T + offset_of!(VcpuTimeInfo, version), Ordering::Acquire);
        if v1 & 1 != 0 {
            continue;
        }
        rmb();
        let tsc_ts = shared.read_u64(T + offset_of!(VcpuTimeInfo, tsc_timestamp));
        let sys = shared.read_u64(T + offset_of!(VcpuTimeInfo, system_time));
        let mul = shared.read_u32(T + offset_of!(VcpuTimeInfo, tsc_to_system_mul));
        let shift = shared.read_u8(T + offset_of!(VcpuTimeInfo, tsc_shift)) as i8;
        let tsc = cpu::rdtsc();
        rmb();
        if shared.load_u32(T + offset_of!(VcpuTimeInfo, version), Ordering::Acquire) != v1 {
            continue;
        }
        return scale(tsc.wrapping_sub(tsc_ts), mul, shift).wrapping_add(sys);
    }
}

/// pvclock's scaling of a TSC delta to nanoseconds.
pub fn scale(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift >= 0 {
        delta << shift
    } else {
        delta >> (-shift)
    };
    ((d as u128 * mul as u128) >> 32) as u64
}
