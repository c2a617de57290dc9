//! NodeService: printers as registered, and the one bidirectional stream per node.

use std::sync::Arc;
use std::time::Instant;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::node_service_server::NodeService;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use fabrouter_router::Network;

use crate::access::Rpc;
use crate::errors::{bad_request, status};
use crate::{State, convert};

#[derive(Clone)]
pub struct Nodes {
    pub state: Arc<State>,
    pub net: Arc<Network>,
    /// Where printers' declared PrusaSlicer configs become profiles.
    pub profiles: Arc<crate::estimates::Profiles>,
}

type RouterMessages =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::RouterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl NodeService for Nodes {
    async fn list_printers(
        &self,
        request: Request<pb::ListPrintersRequest>,
    ) -> Result<Response<pb::ListPrintersResponse>, Status> {
        let t = Instant::now();
        let res = (|| {
            self.state
                .authorize(request.metadata(), Rpc::ListPrinters)?;
            let req = request.get_ref();
            let size = crate::page_size(req.page_size, self.state.config.limits.max_page_size);
            let all = self.net.printers();
            let start = if req.page_token.is_empty() {
                0
            } else {
                all.partition_point(|p| p.name.as_str() <= req.page_token.as_str())
            };
            let page: Vec<_> = all
                .iter()
                .skip(start)
                .take(size + 1)
                .map(convert::printer)
                .collect();
            let more = page.len() > size;
            let mut printers = page;
            printers.truncate(size);
            Ok(pb::ListPrintersResponse {
                next_page_token: if more {
                    printers.last().map(|p| p.name.clone()).unwrap_or_default()
                } else {
                    String::new()
                },
                printers,
            })
        })();
        self.state.metrics.observe("ListPrinters", t, &res);
        res.map(Response::new)
    }

    async fn get_printer(
        &self,
        request: Request<pb::GetPrinterRequest>,
    ) -> Result<Response<pb::Printer>, Status> {
        let t = Instant::now();
        let res = (|| {
            self.state.authorize(request.metadata(), Rpc::GetPrinter)?;
            let name = &request.get_ref().name;
            self.net
                .printers()
                .iter()
                .find(|p| &p.name == name)
                .map(convert::printer)
                .ok_or_else(|| Status::not_found(format!("{name} not found")))
        })();
        self.state.metrics.observe("GetPrinter", t, &res);
        res.map(Response::new)
    }

    type NodeSessionStream = RouterMessages;

    async fn node_session(
        &self,
        request: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::NodeSessionStream>, Status> {
        let who = self.state.authorize(request.metadata(), Rpc::NodeSession)?;
        let node = who.credential.clone();
        let mut inbound = request.into_inner();
        let first = inbound
            .next()
            .await
            .ok_or_else(|| bad_request("hello", "the stream ended before NodeHello"))??;
        let Some(pb::node_message::Msg::Hello(hello)) = first.msg else {
            return Err(bad_request("hello", "the first message must be NodeHello"));
        };
        crate::bounds::node_hello(&hello)?;
        let mut hello = hello;
        self.profiles.declare_hello(&mut hello)?;
        let hello = convert::hello_from(hello);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let net = self.net.clone();
        let session = {
            let net = net.clone();
            let node = node.clone();
            tokio::task::spawn_blocking(move || net.node_connected(&node, &hello, tx))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(status)?
        };
        let mut closing = self.net.closing();
        tokio::spawn(async move {
            loop {
                // Dropping the inbound half on shutdown lets the connection close.
                let msg = tokio::select! {
                    m = inbound.next() => m,
                    _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => None,
                };
                let Some(msg) = msg else { break };
                match msg {
                    Ok(pb::NodeMessage { msg: Some(mut m) }) => {
                        if let Err(why) = crate::bounds::node_message(&mut m) {
                            tracing::warn!(node = %node, "node message dropped: {why}");
                            continue;
                        }
                        let Some(report) = convert::report_from(m) else {
                            continue;
                        };
                        let (net, node) = (net.clone(), node.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            net.node_message(&node, session, report)
                        })
                        .await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!(node = %node, error = %e, "node stream broke");
                        break;
                    }
                }
            }
            net.node_disconnected(&node, session);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(|m| {
                m.map(convert::command)
                    .map_err(|hangup| Status::unavailable(hangup.0))
            }),
        )))
    }
}
