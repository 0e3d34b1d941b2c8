//! Accept loop and per-connection lifecycle.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::NbdError;
use super::config::NbdConfig;
use super::export::Exports;
use super::handshake::{self, HandshakeError, Negotiated, Outcome, State};
use super::transmission;

/// An NBD server over a set of exports.
pub struct NbdServer<X: Exports> {
    exports: Arc<X>,
    config: Arc<NbdConfig>,
    tls: Option<TlsAcceptor>,
}

impl<X: Exports> std::fmt::Debug for NbdServer<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdServer")
            .field("config", &self.config)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A finished handshake: the stream and what was negotiated (`None`: the client aborted).
type Handshaken<X> = Option<(Conn, Negotiated<<X as Exports>::Export>)>;

/// The stream after the handshake: TLS or not.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl<X: Exports> NbdServer<X> {
    /// Validates the configuration and loads TLS credentials.
    pub fn new(exports: Arc<X>, config: NbdConfig) -> Result<Self, NbdError> {
        if config.tls_required && config.tls.is_none() {
            return Err(NbdError::Config(
                "tls_required without tls credentials".into(),
            ));
        }
        if config.max_connections == 0 {
            return Err(NbdError::Config("max_connections must be positive".into()));
        }
        let tls = config.tls.as_ref().map(super::tls::acceptor).transpose()?;
        Ok(Self {
            exports,
            config: Arc::new(config),
            tls,
        })
    }

    /// Accepts connections until `shutdown` completes, then stops reading new requests, lets
    /// in-flight ones finish (up to `shutdown_grace`) and returns once every connection is
    /// closed.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let mut conns = JoinSet::new();
        let this = Arc::new(self);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(joined) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = joined {
                        tracing::error!(error = %e, "NBD connection task failed");
                    }
                }
                accepted = listener.accept() => {
                    let (sock, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Usually EMFILE; back off instead of spinning.
                            tracing::warn!(error = %e, "NBD accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = this.config.max_connections,
                            "NBD connection limit reached; closing");
                        continue;
                    };
                    let this = this.clone();
                    let stop = stop_rx.clone();
                    let span = tracing::info_span!("nbd", %peer, export = tracing::field::Empty);
                    conns.spawn(
                        async move {
                            this.connection(sock, peer, stop).await;
                            drop(slot);
                        }
                        .instrument(span),
                    );
                }
            }
        }
        let _ = stop_tx.send(true);
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(this.config.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = conns.len(),
                "NBD shutdown grace expired; dropping"
            );
            conns.shutdown().await;
        }
    }

    async fn connection(&self, sock: TcpStream, peer: SocketAddr, stop: watch::Receiver<bool>) {
        // Requests and replies are small and latency-bound; Nagle would stall pipelines.
        if let Err(e) = sock.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay");
        }
        let mut stop_hs = stop.clone();
        let handshake = tokio::time::timeout(self.config.handshake_timeout, self.handshake(sock));
        let negotiated = tokio::select! {
            r = handshake => r,
            _ = stop_hs.wait_for(|s| *s) => return,
        };
        let (conn, neg) = match negotiated {
            Err(_) => {
                tracing::warn!(%peer, "NBD handshake timed out");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "NBD handshake failed");
                return;
            }
            Ok(Ok(None)) => return,
            Ok(Ok(Some(n))) => n,
        };
        tracing::Span::current().record("export", neg.name.as_str());
        tracing::debug!(
            structured = neg.structured,
            flags = neg.flags,
            "transmission"
        );
        let result = match conn {
            Conn::Plain(s) => transmission::run(s, neg, &self.config, stop).await,
            Conn::Tls(s) => transmission::run(*s, neg, &self.config, stop).await,
        };
        if let Err(e) = result {
            tracing::warn!(%peer, error = %e, "NBD connection closed");
        }
    }

    /// Greeting and option haggling, upgrading to TLS when the client asks.
    async fn handshake(&self, mut sock: TcpStream) -> Result<Handshaken<X>, HandshakeError> {
        let flags = handshake::greet(&mut sock).await?;
        let mut st = State::new(
            flags.no_zeroes,
            self.tls.is_some(),
            self.config.tls_required,
        );
        match handshake::haggle(&mut sock, &mut st, &*self.exports).await? {
            Outcome::Transmit(n) => Ok(Some((Conn::Plain(sock), n))),
            Outcome::Abort => Ok(None),
            Outcome::StartTls => {
                // haggle only acknowledges STARTTLS when an acceptor exists.
                let Some(acceptor) = &self.tls else {
                    return Ok(None);
                };
                let mut tls = acceptor.accept(sock).await?;
                st.tls_started();
                match handshake::haggle(&mut tls, &mut st, &*self.exports).await? {
                    Outcome::Transmit(n) => Ok(Some((Conn::Tls(Box::new(tls)), n))),
                    // A second STARTTLS is refused inside haggle, so it never ends this way.
                    Outcome::Abort | Outcome::StartTls => Ok(None),
                }
            }
        }
    }
}
