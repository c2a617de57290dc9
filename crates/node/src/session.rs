//! One `NodeService.NodeSession` stream to the router: authenticate with the node's
//! credentials, send `NodeHello` (printers and held jobs) first, wait for `Welcome`.

use std::time::Duration;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::node_service_client::NodeServiceClient;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

/// How long the router has to answer `NodeHello` with `Welcome`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP connect timeout to the router.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings find a dead router connection (a pulled cable sends no reset).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// An unanswered ping this long closes the connection.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Adds `authorization: Bearer ...` to every call.
#[derive(Clone)]
pub struct Bearer(pub String);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let value = format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| tonic::Status::unauthenticated("the node secret is not valid ASCII"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

/// A lazily connecting channel to the router that reconnects by itself.
pub fn router_channel(router: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(router.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// An established session.
pub struct Session {
    /// Messages to the router.
    pub tx: mpsc::UnboundedSender<pb::NodeMessage>,
    /// Messages from the router.
    pub inbox: tonic::Streaming<pb::RouterMessage>,
    /// What the router asked for.
    pub welcome: pb::Welcome,
}

impl Session {
    /// Sends one message (a closed stream shows up on the inbox).
    pub fn send(&self, msg: pb::node_message::Msg) {
        let _ = self.tx.send(pb::NodeMessage { msg: Some(msg) });
    }
}

/// Opens the stream and waits for `Welcome`.
pub async fn open(channel: Channel, bearer: &str, hello: pb::NodeHello) -> anyhow::Result<Session> {
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(pb::NodeMessage {
        msg: Some(pb::node_message::Msg::Hello(hello)),
    })?;
    let mut client = NodeServiceClient::with_interceptor(channel, Bearer(bearer.to_string()));
    let fut = async {
        let mut inbox = client
            .node_session(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await?
            .into_inner();
        let first = inbox
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("the router closed the session before Welcome"))??;
        match first.msg {
            Some(pb::router_message::Msg::Welcome(welcome)) => Ok(Session { tx, inbox, welcome }),
            other => anyhow::bail!("expected Welcome from the router, got {other:?}"),
        }
    };
    tokio::time::timeout(WELCOME_TIMEOUT, fut)
        .await
        .map_err(|_| anyhow::anyhow!("no Welcome from the router within {WELCOME_TIMEOUT:?}"))?
}
