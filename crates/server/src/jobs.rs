//! JobService: quotes, idempotent submissions, the job's life and its event history. The
//! decisions and state changes live in the router core (`fabrouter_router`); this is the gRPC
//! edge: authentication, bounds, conversion and status mapping.

use std::sync::Arc;
use std::time::Instant;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::job_service_server::JobService;
use fabrouter_router::Network;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::access::{JobUse, Rpc};
use crate::errors::status;
use crate::{State, bounds, convert};

#[derive(Clone)]
pub struct Jobs {
    pub state: Arc<State>,
    pub net: Arc<Network>,
}

/// Whether an event of the API's ends the job's history.
fn is_terminal(state: i32) -> bool {
    matches!(
        pb::JobState::try_from(state),
        Ok(pb::JobState::Completed | pb::JobState::Failed | pb::JobState::Cancelled)
    )
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
            let who = self.state.authorize(request.metadata(), Rpc::QuoteJob)?;
            let req = request.into_inner();
            bounds::job_spec(req.spec.as_ref())?;
            let spec = convert::spec_from(
                req.spec
                    .ok_or_else(|| crate::errors::bad_request("spec", "spec is required"))?,
            );
            let turn = self.net.routing_turn().await.map_err(status)?;
            // Estimating may slice the model: off the async threads.
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                net.quote(&who, &spec, req.max_options)
                    .map(convert::quote)
                    .map_err(status)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
        }
        .await;
        self.state.metrics.observe("QuoteJob", t, &res);
        res.map(Response::new)
    }

    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let t = Instant::now();
        let net = self.net.clone();
        let res = async {
            let who = self.state.authorize(request.metadata(), Rpc::SubmitJob)?;
            let req = request.into_inner();
            bounds::job_spec(req.spec.as_ref())?;
            bounds::name("printer", &req.printer)?;
            let spec = req.spec.map(convert::spec_from);
            // Routing takes well under a millisecond: it runs here, as a handoff to a blocking
            // thread and back would cost more than it saves. Only a design whose estimates are
            // not in memory yet (slicing may take seconds) goes to a blocking thread.
            let submitted = net
                .submit(
                    &who,
                    spec.as_ref(),
                    &req.printer,
                    &req.idempotency_key,
                    false,
                )
                .map_err(status)?;
            let (submitted, ticket) = match submitted {
                Some(done) => done,
                None => {
                    let turn = net.routing_turn().await.map_err(status)?;
                    let net = net.clone();
                    tokio::task::spawn_blocking(move || {
                        let _turn = turn;
                        net.submit(
                            &who,
                            spec.as_ref(),
                            &req.printer,
                            &req.idempotency_key,
                            true,
                        )
                    })
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(status)?
                    .ok_or_else(|| Status::internal("estimates were computed but not kept"))?
                }
            };
            // Acknowledged only once on disk; the wait shares one flush with every submit
            // that arrived meanwhile, and holds no thread.
            self.net.durable(ticket).await.map_err(status)?;
            Ok(pb::SubmitJobResponse {
                jobs: submitted.jobs.iter().map(convert::job).collect(),
                replayed: submitted.replayed,
            })
        }
        .await;
        self.state.metrics.observe("SubmitJob", t, &res);
        res.map(Response::new)
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self.state.authorize(request.metadata(), Rpc::GetJob)?;
            self.net
                .job_for(&who, &request.get_ref().name, JobUse::Read)
                .map(|j| convert::job(&j))
                .map_err(status)
        })();
        self.state.metrics.observe("GetJob", t, &res);
        res.map(Response::new)
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let t = Instant::now();
        let res = (|| {
            let who = self.state.authorize(request.metadata(), Rpc::ListJobs)?;
            let req = request.get_ref();
            let size = crate::page_size(req.page_size, self.state.config.limits.max_page_size);
            let after = crate::page_after(&req.page_token)?;
            let mut jobs = self
                .net
                .list_jobs(&who.id, after, size + 1)
                .map_err(status)?;
            let more = jobs.len() > size;
            jobs.truncate(size);
            let next = if more {
                jobs.last().map(|j| j.id.clone()).unwrap_or_default()
            } else {
                String::new()
            };
            Ok(pb::ListJobsResponse {
                jobs: jobs.iter().map(convert::job).collect(),
                next_page_token: next,
            })
        })();
        self.state.metrics.observe("ListJobs", t, &res);
        res.map(Response::new)
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self.state.authorize(request.metadata(), Rpc::CancelJob)?;
            let req = request.get_ref();
            bounds::reason(&req.reason)?;
            self.net
                .cancel(&who, &req.name, &req.reason)
                .await
                .map(|j| convert::job(&j))
                .map_err(status)
        }
        .await;
        self.state.metrics.observe("CancelJob", t, &res);
        res.map(Response::new)
    }

    async fn pause_job(
        &self,
        request: Request<pb::PauseJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self.state.authorize(request.metadata(), Rpc::PauseJob)?;
            self.net
                .pause(&who, &request.get_ref().name)
                .await
                .map(|j| convert::job(&j))
                .map_err(status)
        }
        .await;
        self.state.metrics.observe("PauseJob", t, &res);
        res.map(Response::new)
    }

    async fn resume_job(
        &self,
        request: Request<pb::ResumeJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let t = Instant::now();
        let res = async {
            let who = self.state.authorize(request.metadata(), Rpc::ResumeJob)?;
            self.net
                .resume(&who, &request.get_ref().name)
                .await
                .map(|j| convert::job(&j))
                .map_err(status)
        }
        .await;
        self.state.metrics.observe("ResumeJob", t, &res);
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
            let who = self.state.authorize(request.metadata(), Rpc::WatchJob)?;
            let job = self
                .net
                .job_for(&who, &request.get_ref().name, JobUse::Read)
                .map_err(status)?;
            let history = self
                .net
                .events_from(&job.id, request.get_ref().from_sequence)
                .map_err(status)?;
            Ok((job.id.clone(), convert::job(&job), history))
        })();
        self.state.metrics.observe("WatchJob", t, &res);
        let (id, job, history) = res?;
        let net = self.net.clone();
        let mut closing = self.net.closing();
        let stream = async_stream(move |tx| async move {
            let mut last = 0;
            let mut ended = is_terminal(job.state);
            for e in history.iter().map(convert::event) {
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
                .is_some_and(|j| j.state.is_terminal());
            if ended || done {
                let rest = net.events_from(&id, last + 1).unwrap_or_default();
                for e in rest.iter().map(convert::event) {
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
                    Ok(e) if e.job == id && e.sequence > last => {
                        let e = convert::event(&e);
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
                        for e in rest.iter().map(convert::event) {
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
