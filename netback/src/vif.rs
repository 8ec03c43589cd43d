//! One client device: its identity, what the toolstack wrote for it, its
//! xenbus progress and, while connected, its rings and queues.

use alloc::string::String;
use alloc::vec::Vec;

use xen::abi::netif::{NetifExtraInfo, NetifRxResponse};
use xen::abi::{DomId, EvtchnPort};
use xen::frame::offload::Segmenter;
use xen::frame::{Frame, FrameQueue};
use xen::gnttab::ForeignMapping;
use xen::ring::{BackRing, NetifRx, NetifTx};
use xen::xenbus::XenbusState;

use crate::rx::Peer;
use crate::stats::Stats;
use crate::tx::TxOffered;

/// A client device: frontend domain and device id (`backend/vif/<domid>/<devid>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VifId {
    /// The client's domain.
    pub domid: DomId,
    /// The device id (`<n>` in `device/vif/<n>`).
    pub devid: u32,
}

impl core::fmt::Display for VifId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.domid, self.devid)
    }
}

/// What both sides agreed on when the vif connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// What we may send the client (rx).
    pub peer: Peer,
    /// GSO types the client may send us (tx).
    pub offered: TxOffered,
    /// The client notifies us when it posts rx buffers
    /// (`feature-rx-notify`); without it, queued frames wait for the next
    /// flush after it posts some.
    pub rx_notify: bool,
}

/// Public facts about a vif.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifInfo {
    /// Which device.
    pub id: VifId,
    /// The client's MAC (`mac` in the backend directory), if it parsed.
    pub mac: Option<[u8; 6]>,
    /// The client's address(es) as the toolstack wrote them (`ip`, space
    /// separated; empty if none).
    pub ip: String,
    /// The frontend directory (`frontend`).
    pub frontend: String,
    /// Our xenbus state as we last wrote it.
    pub state: XenbusState,
    /// While connected: what was negotiated.
    pub negotiated: Option<Negotiated>,
}

/// A response to write into the rx ring.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RxRsp {
    Data(NetifRxResponse),
    Extra(NetifExtraInfo),
}

/// A GSO frame being cut into segments for a client without GSO.
pub(crate) struct SegState {
    pub(crate) seg: Segmenter,
    pub(crate) frame: Frame,
    pub(crate) partial: bool,
    /// Payload bytes emitted so far.
    pub(crate) emitted: usize,
    pub(crate) header_len: usize,
    pub(crate) payload_len: usize,
    pub(crate) mss: usize,
    /// Segments still to emit.
    pub(crate) left: usize,
}

impl SegState {
    /// Bytes of the next segment (header + payload).
    pub(crate) fn next_len(&self) -> usize {
        self.header_len + self.mss.min(self.payload_len.saturating_sub(self.emitted))
    }
}

/// The data path of a connected vif.
pub(crate) struct Conn {
    pub(crate) map: Option<ForeignMapping>,
    pub(crate) tx: BackRing<NetifTx>,
    pub(crate) rx: BackRing<NetifRx>,
    pub(crate) port: EvtchnPort,
    pub(crate) neg: Negotiated,
    /// Frames waiting for the client's rx buffers.
    pub(crate) queue: FrameQueue,
    /// Responses of the current flush batch, in ring order.
    pub(crate) rsps: Vec<RxRsp>,
    /// Responses written to the ring but not yet published.
    pub(crate) unpublished: bool,
    pub(crate) seg: Option<SegState>,
    /// `poll` stopped early (caller's queue full or pool low).
    pub(crate) tx_blocked: bool,
    /// Requests arrived during the final check.
    pub(crate) tx_more: bool,
    /// The rx request producer seen by the last poll.
    pub(crate) rx_seen: u32,
    /// `send` handed a frame back (queue full) since the last flush.
    pub(crate) rx_refused: bool,
    /// The last flush made room in a queue that had refused a frame: the
    /// caller has frames for us and should send again before sleeping
    /// (nothing else would wake it: with the queue drained there are no
    /// rx requests to wait for). Cleared by the next `send` or flush.
    pub(crate) rx_room: bool,
    /// Event-storm accounting.
    pub(crate) idle: u32,
    pub(crate) storm_start: u64,
    /// Drain-timeout accounting.
    pub(crate) stall_since: Option<u64>,
    pub(crate) rx_progress: bool,
    /// Set during a flush: disconnect after it, for this reason (and
    /// whether the client is hostile rather than gone).
    pub(crate) failed: Option<(String, bool)>,
}

/// Removal after the toolstack set `online = 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Not requested.
    No,
    /// Waiting for the frontend to close; remove at the deadline (set at
    /// the next tick if `None`).
    Waiting(Option<u64>),
}

/// One device we serve (or refuse to).
pub(crate) struct Vif {
    pub(crate) info: VifInfo,
    /// `backend/vif/<F>/<n>`, relative to our home.
    pub(crate) dir: String,
    /// `<frontend>/state`.
    pub(crate) fe_state: String,
    /// The watch token for `fe_state`.
    pub(crate) token: String,
    pub(crate) online: bool,
    pub(crate) conn: Option<Conn>,
    /// The data path failed outside a xenstore-capable call: write
    /// Closing/Closed at the next one.
    pub(crate) close_pending: bool,
    pub(crate) removal: Removal,
    /// The toolstack's keys are unusable: ignored until the dir goes.
    pub(crate) broken: bool,
    /// A warning about this vif was logged since it last connected: any
    /// further complaint (the frontend going on writing garbage after we
    /// closed it) is logged at info, so one misbehaving peer costs one
    /// warning line.
    pub(crate) warned: bool,
    pub(crate) stats: Stats,
}
