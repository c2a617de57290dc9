//! Services whose contract is fixed in the proto but whose behaviour arrives with the routing
//! issue. Each RPC answers UNIMPLEMENTED with what is missing, never a made-up answer.

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::job_service_server::JobService;
use fabrouter_api::v1::node_service_server::NodeService;
use tonic::{Request, Response, Status, Streaming};

fn later(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is part of the printer network, which this router version does not run yet"
    ))
}

/// JobService until routing lands.
#[derive(Clone, Default)]
pub struct PendingJobs;

type Events = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::JobEvent, Status>> + Send>>;
type RouterMessages =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::RouterMessage, Status>> + Send>>;

#[tonic::async_trait]
impl JobService for PendingJobs {
    async fn quote_job(
        &self,
        _: Request<pb::QuoteJobRequest>,
    ) -> Result<Response<pb::Quote>, Status> {
        Err(later("QuoteJob"))
    }
    async fn submit_job(
        &self,
        _: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        Err(later("SubmitJob"))
    }
    async fn get_job(&self, _: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        Err(later("GetJob"))
    }
    async fn list_jobs(
        &self,
        _: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        Err(later("ListJobs"))
    }
    async fn cancel_job(
        &self,
        _: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        Err(later("CancelJob"))
    }
    type WatchJobStream = Events;
    async fn watch_job(
        &self,
        _: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        Err(later("WatchJob"))
    }
}

/// NodeService until routing lands.
#[derive(Clone, Default)]
pub struct PendingNodes;

#[tonic::async_trait]
impl NodeService for PendingNodes {
    async fn list_printers(
        &self,
        _: Request<pb::ListPrintersRequest>,
    ) -> Result<Response<pb::ListPrintersResponse>, Status> {
        Err(later("ListPrinters"))
    }
    async fn get_printer(
        &self,
        _: Request<pb::GetPrinterRequest>,
    ) -> Result<Response<pb::Printer>, Status> {
        Err(later("GetPrinter"))
    }
    type NodeSessionStream = RouterMessages;
    async fn node_session(
        &self,
        _: Request<Streaming<pb::NodeMessage>>,
    ) -> Result<Response<Self::NodeSessionStream>, Status> {
        Err(later("NodeSession"))
    }
}
