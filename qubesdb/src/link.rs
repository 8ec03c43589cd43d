//! The VM's QubesDB connection over a real vchan: [`Vchan`] as a
//! [`ByteStream`], and [`Connection`], a [`Client`] joined to the vchan
//! dom0 serves on port 111.
//!
//! The connection is non-blocking like the rest of the firewall: an event
//! loop waits on [`Connection::port`] (with its other ports) and calls
//! [`Connection::service`] when it fires; [`Connection::wait_synced`] is a
//! blocking helper for start-up, when nothing else can run before the
//! configuration is known.
//!
//! When the vchan fails or dom0 breaks the protocol, take the client back
//! with [`Connection::into_client`], connect a new vchan and join them with
//! [`Connection::resume`]: the client keeps its replica and snapshots (the
//! firewall keeps enforcing the committed rules) and sends its one
//! MULTIREAD on the new connection.

use vchan::{Vchan, VchanError};
use xen::abi::{DomId, EvtchnPort};
use xen::evtchn::{EventChannels, Wake};
use xen::store::Xenstore;
use xen::Platform;

use crate::client::Client;
use crate::stream::{pump, ByteStream, PumpError};
use crate::{SERVER_DOMID, VCHAN_PORT};

impl<P: Platform + Clone> ByteStream for Vchan<P> {
    type Error = VchanError;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        Vchan::read(self, buf)
    }

    fn write(&mut self, buf: &[u8]) -> Result<usize, VchanError> {
        Vchan::write(self, buf)
    }
}

/// Connect the vchan dom0 (domain [`SERVER_DOMID`]) serves to us on port
/// [`VCHAN_PORT`], at `/local/domain/0/data/vchan/<our domid>/111`,
/// waiting for dom0 to publish it until Xen time `deadline`.
pub fn connect_vchan<P: Platform + Clone>(
    ev: &EventChannels<P>,
    store: &mut Xenstore<P>,
    deadline: Option<u64>,
) -> Result<Vchan<P>, VchanError> {
    connect_vchan_to(ev, store, SERVER_DOMID, deadline)
}

/// [`connect_vchan`] to another server domain (tests).
pub fn connect_vchan_to<P: Platform + Clone>(
    ev: &EventChannels<P>,
    store: &mut Xenstore<P>,
    server: DomId,
    deadline: Option<u64>,
) -> Result<Vchan<P>, VchanError> {
    Vchan::client_qubes(ev, store, server, VCHAN_PORT, deadline)
}

/// A [`Client`] driven over a [`Vchan`] (see the module doc).
#[derive(Debug)]
pub struct Connection<P: Platform + Clone> {
    vchan: Vchan<P>,
    client: Client,
}

impl<P: Platform + Clone> Connection<P> {
    /// Connect to dom0 and start a session with a new client.
    pub fn connect(
        ev: &EventChannels<P>,
        store: &mut Xenstore<P>,
        deadline: Option<u64>,
    ) -> Result<Connection<P>, VchanError> {
        let vchan = connect_vchan(ev, store, deadline)?;
        Ok(Connection::new(vchan, Client::new()))
    }

    /// Join a fresh client (its MULTIREAD queued) to a connected vchan.
    pub fn new(vchan: Vchan<P>, client: Client) -> Connection<P> {
        Connection { vchan, client }
    }

    /// Join a client from an earlier connection to a new vchan: the client
    /// starts a new session ([`Client::reconnect`]) and keeps its views
    /// until the new dump completes.
    pub fn resume(vchan: Vchan<P>, mut client: Client) -> Connection<P> {
        client.reconnect();
        Connection { vchan, client }
    }

    /// The event channel port to wait on.
    pub fn port(&self) -> EvtchnPort {
        self.vchan.port()
    }

    /// The client (views, events, watches).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client, mutably (poll events, write keys).
    pub fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The vchan.
    pub fn vchan(&mut self) -> &mut Vchan<P> {
        &mut self.vchan
    }

    /// Move bytes both ways until neither makes progress (call when the
    /// port fired, and after [`Client::write`]). Returns whether anything
    /// moved. An error ends this connection: see [`Connection::into_client`].
    pub fn service(&mut self) -> Result<bool, PumpError<VchanError>> {
        pump(&mut self.client, &mut self.vchan)
    }

    /// Service the connection until the dump is complete, sleeping on the
    /// port in between, until Xen time `deadline`
    /// ([`VchanError::Timeout`]).
    pub fn wait_synced(&mut self, deadline: Option<u64>) -> Result<(), PumpError<VchanError>> {
        loop {
            self.service()?;
            if self.client.is_synced() {
                return Ok(());
            }
            if let Some(e) = self.client.broken() {
                return Err(PumpError::Protocol(e.clone()));
            }
            match self.vchan.wait(deadline) {
                Ok(Wake::Pending) => {}
                Ok(Wake::Timeout) => return Err(PumpError::Stream(VchanError::Timeout)),
                Err(e) => return Err(PumpError::Stream(e)),
            }
        }
    }

    /// Close the vchan (as libxenvchan: liveness byte, unmap, notify) and
    /// keep the client for a later [`Connection::resume`].
    pub fn into_client(self) -> Client {
        let Connection { vchan, client } = self;
        if let Err(e) = vchan.close() {
            log::warn!("qubesdb: closing the vchan: {e}");
        }
        client
    }
}
