//! JobService: quotes, idempotent submissions, the job's life and its event history. The
//! decisions and state changes live in `network`; this is the gRPC edge.

use std::sync::Arc;
use std::time::Instant;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::job_service_server::JobService;
use prost::Message;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::access::{JobUse, Rpc};
use crate::bounds;
use crate::errors::store_status;
use crate::network::{Network, is_terminal};

#[derive(Clone)]
pub struct Jobs {
    pub net: Arc<Network>,
}

type Events = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

#[tonic::async_trait]
impl JobService for Jobs {
    async fn quote_job(
        &self,
        request: Request<pb::QuoteJobRequest>,
    ) -> Result<Response<pb::Quote>, Status> {
        let t = Instant::now();
        let net = self.net.clone();
        let res = async {
            // Refused callers never wait for a routing turn.
            let who = net.state.authorize(request.metadata(), Rpc::QuoteJob)?;
            bounds::job_spec(request.get_ref().spec.as_ref())?;
            let turn = self.net.routing_turn().await?;
            // Estimating may slice the model: off the async threads.
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                net.quote(&who, request.get_ref())
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
        }
        .await;
        self.net.state.metrics.observe("QuoteJob", t, &res);
        res.map(Response::new)
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let t = Instant::now();
        let net = self.net.clone();
        let res = async {
            let who = net.state.authorize(request.metadata(), Rpc::SubmitJob)?;
            let req = request.get_ref();
            bounds::job_spec(req.spec.as_ref())?;
            bounds::name("printer", &req.printer)?;
            // Routing takes well under a millisecond: it runs here, as a handoff to a blocking
            // thread and back would cost more than it saves. Only a design whose estimates are
            // not in memory yet (slicing may take seconds) goes to a blocking thread.
            let (response, ticket) = match net.submit(&who, request.get_ref(), false)? {
                Some(done) => done,
                None => {
                    let turn = net.routing_turn().await?;
                    let net = net.clone();
                    tokio::task::spawn_blocking(move || {
                        let _turn = turn;
                        net.submit(&who, request.get_ref(), true)
                    })
                    .await
                    .map_err(|e| Status::internal(e.to_string()))??
                    .ok_or_else(|| Status::internal("estimates were computed but not kept"))?
                }
            };
            // Acknowledged only once on disk; the wait shares one flush with every submit
            // that arrived meanwhile, and holds no thread.
            self.net.durable(ticket).await?;
            Ok(response)
        }
        .await;
        self.net.state.metrics.observe("SubmitJob", t, &res);
        res.map(Response::new)
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self.net.state.authorize(request.metadata(), Rpc::GetJob)?;
            self.net
                .job_for(&who, &request.get_ref().name, JobUse::Read)
                .map(|(_, j)| j)
        })();
        self.net.state.metrics.observe("GetJob", t, &res);
        res.map(Response::new)
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self
                .net
                .state
                .authorize(request.metadata(), Rpc::ListJobs)?;
            let req = request.get_ref();
            let size = crate::page_size(req.page_size, self.net.state.config.limits.max_page_size);
            let after = crate::page_after(&req.page_token)?;
            let mut recs = self
                .net
                .state
                .store
                .list_jobs(&who.id, after, size + 1)
                .map_err(store_status)?;
            let more = recs.len() > size;
            recs.truncate(size);
            let next = if more {
                recs.last().map(|r| r.id.clone()).unwrap_or_default()
            } else {
                String::new()
            };
            let jobs = recs
                .iter()
                .map(|r| {
                    pb::Job::decode(r.job.as_slice())
                        .map_err(|e| Status::internal(format!("stored job unreadable: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(pb::ListJobsResponse {
                jobs,
                next_page_token: next,
            })
        })();
        self.net.state.metrics.observe("ListJobs", t, &res);
        res.map(Response::new)
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self
                .net
                .state
                .authorize(request.metadata(), Rpc::CancelJob)?;
            bounds::reason(&request.get_ref().reason)?;
            self.net.cancel(&who, request.get_ref()).await
        }
        .await;
        self.net.state.metrics.observe("CancelJob", t, &res);
        res.map(Response::new)
    }

    type WatchJobStream = Events;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let t = Instant::now();
        // Subscribe before reading the history, so no event falls between the two.
        let mut live = self.net.subscribe();
        let res = (|| {
            let who = self
                .net
                .state
                .authorize(request.metadata(), Rpc::WatchJob)?;
            let (id, job) = self
                .net
                .job_for(&who, &request.get_ref().name, JobUse::Read)?;
            let history = self.net.events_from(&id, request.get_ref().from_sequence)?;
            Ok((id, job, history))
        })();
        self.net.state.metrics.observe("WatchJob", t, &res);
        let (id, job, history) = res?;
        let name = job.name.clone();
        let net = self.net.clone();
        let mut closing = self.net.closing();
        let stream = async_stream(move |tx| async move {
            let mut last = 0;
            let mut ended = is_terminal(job.state);
            for e in history {
                last = e.sequence;
                ended |= is_terminal(e.state) && e.kind != pb::JobEventKind::Rerouted as i32;
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            // A finished job's history is complete once replayed.
            let done = net
                .load_job(&id)
                .ok()
                .flatten()
                .is_some_and(|j| is_terminal(j.state));
            if ended || done {
                let rest = net.events_from(&id, last + 1).unwrap_or_default();
                for e in rest {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                if done {
                    return;
                }
            }
            loop {
                let next = tokio::select! {
                    e = live.recv() => e,
                    _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => {
                        let _ = tx.send(Err(Status::unavailable("the router is shutting down; watch again from the last sequence"))).await;
                        return;
                    }
                };
                match next {
                    Ok(e) if e.job == name && e.sequence > last => {
                        last = e.sequence;
                        let end = is_terminal(e.state);
                        if tx.send(Ok(e)).await.is_err() || end {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // Too slow for the live feed: catch up from the store.
                        let Ok(rest) = net.events_from(&id, last + 1) else {
                            return;
                        };
                        for e in rest {
                            last = e.sequence;
                            let end = is_terminal(e.state);
                            if tx.send(Ok(e)).await.is_err() || end {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A response stream fed by a task.
fn async_stream<F, Fut>(f: F) -> Events
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::JobEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
