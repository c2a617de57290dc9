//! AdminService: API tokens and node identities. Secrets are shown once and stored as hashes.

use std::sync::Arc;
use std::time::Instant;

use fabrouter_api::v1 as pb;
use fabrouter_api::v1::admin_service_server::AdminService;
use fabrouter_store::TokenRecord;
use tonic::{Request, Response, Status};

use crate::State;
use crate::access::Rpc;
use crate::auth;
use crate::designs::timestamp;
use crate::errors::{bad_request, store_status};

#[derive(Clone)]
pub struct Admin {
    pub state: Arc<State>,
}

fn token_info(t: &TokenRecord) -> pb::TokenInfo {
    pb::TokenInfo {
        name: format!("tokens/{}", t.id),
        role: t.role,
        principal: format!("principals/{}", t.principal),
        label: t.label.clone(),
        create_time: Some(timestamp(t.created_unix_ms)),
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let t = Instant::now();
        let res = (|| {
            self.state.authorize(request.metadata(), Rpc::CreateToken)?;
            let req = request.get_ref();
            let role = pb::Role::try_from(req.role).unwrap_or(pb::Role::Unspecified);
            if matches!(role, pb::Role::Unspecified | pb::Role::Node) {
                return Err(bad_request(
                    "role",
                    "role must be designer, operator, marketplace or admin (nodes use CreateNode)",
                ));
            }
            crate::bounds::label(&req.label)?;
            let (rec, secret) = auth::create_token(self.state.store.as_ref(), role, &req.label)
                .map_err(store_status)?;
            tracing::info!(token = %rec.id, role = auth::role_from_pb(role as i32).word(), "token created");
            Ok(pb::CreateTokenResponse {
                token: Some(token_info(&rec)),
                secret,
            })
        })();
        self.state.metrics.observe("CreateToken", t, &res);
        res.map(Response::new)
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let t = Instant::now();
        let res = (|| {
            self.state.authorize(request.metadata(), Rpc::ListTokens)?;
            let tokens = self.state.store.list_tokens().map_err(store_status)?;
            Ok(pb::ListTokensResponse {
                tokens: tokens.iter().map(token_info).collect(),
            })
        })();
        self.state.metrics.observe("ListTokens", t, &res);
        res.map(Response::new)
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let t = Instant::now();
        let res = (|| {
            self.state.authorize(request.metadata(), Rpc::RevokeToken)?;
            let name = &request.get_ref().name;
            let id = fabrouter_api::names::parse(name, "tokens")
                .ok_or_else(|| bad_request("name", "expected tokens/{id}"))?;
            if !self.state.store.revoke_token(id).map_err(store_status)? {
                return Err(Status::not_found(format!("{name} not found")));
            }
            Ok(pb::RevokeTokenResponse {})
        })();
        self.state.metrics.observe("RevokeToken", t, &res);
        res.map(Response::new)
    }

    async fn create_node(
        &self,
        request: Request<pb::CreateNodeRequest>,
    ) -> Result<Response<pb::CreateNodeResponse>, Status> {
        let t = Instant::now();
        let res = (|| {
            self.state.authorize(request.metadata(), Rpc::CreateNode)?;
            let req = request.get_ref();
            crate::bounds::label(&req.label)?;
            let secret = auth::create_node(self.state.store.as_ref(), &req.node_id, &req.label)?;
            Ok(pb::CreateNodeResponse {
                node_id: req.node_id.clone(),
                secret,
            })
        })();
        self.state.metrics.observe("CreateNode", t, &res);
        res.map(Response::new)
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let t = Instant::now();
        let res = self
            .state
            .authorize(request.metadata(), Rpc::WhoAmI)
            .map(|p| pb::WhoAmIResponse {
                principal: format!("principals/{}", p.id),
                role: auth::role_to_pb(p.role) as i32,
                token: p.credential,
            });
        self.state.metrics.observe("WhoAmI", t, &res);
        res.map(Response::new)
    }
}
