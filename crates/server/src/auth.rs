//! Who is calling: every request carries `authorization: Bearer <secret>`; the secret's sha256
//! finds a token, the token gives a principal and a role. Node agents authenticate with
//! `Bearer node:{node_id}:{secret}`.

use fabrouter_api::v1 as pb;
use fabrouter_store::{NodeRecord, Store, TokenRecord, sha256_hex};
use rand::RngCore;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::access::{Denial, Role};

pub use crate::access::Principal;

/// The API's role in the access rules' words.
pub fn role_from_pb(r: i32) -> Role {
    match pb::Role::try_from(r) {
        Ok(pb::Role::Designer) => Role::Designer,
        Ok(pb::Role::Operator) => Role::Operator,
        Ok(pb::Role::Marketplace) => Role::Marketplace,
        Ok(pb::Role::Admin) => Role::Admin,
        Ok(pb::Role::Node) => Role::Node,
        Ok(pb::Role::Unspecified) | Err(_) => Role::Unknown,
    }
}

/// The access rules' role in the API's words.
pub fn role_to_pb(r: Role) -> pb::Role {
    match r {
        Role::Designer => pb::Role::Designer,
        Role::Operator => pb::Role::Operator,
        Role::Marketplace => pb::Role::Marketplace,
        Role::Admin => pb::Role::Admin,
        Role::Node => pb::Role::Node,
        Role::Unknown => pb::Role::Unspecified,
    }
}

/// A fresh random secret, hex-encoded, with a recognisable prefix.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Creates a token for a new principal and returns it with its secret.
pub fn create_token(
    store: &dyn Store,
    role: pb::Role,
    label: &str,
) -> fabrouter_store::Result<(TokenRecord, String)> {
    let secret = new_secret("fab_");
    let rec = TokenRecord {
        id: uuid::Uuid::now_v7().simple().to_string(),
        secret_sha256: sha256_hex(secret.as_bytes()),
        role: role as i32,
        principal: uuid::Uuid::now_v7().simple().to_string(),
        label: label.to_string(),
        created_unix_ms: now_unix_ms(),
    };
    store.put_token(&rec)?;
    Ok((rec, secret))
}

/// Creates a node identity; returns its secret.
pub fn create_node(store: &dyn Store, node_id: &str, label: &str) -> Result<String, Status> {
    let valid = !node_id.is_empty()
        && node_id.len() <= 63
        && node_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(Status::invalid_argument(format!(
            "node id {node_id:?} must be 1-63 lowercase letters, digits or dashes"
        )));
    }
    let secret = new_secret("");
    let rec = NodeRecord {
        node_id: node_id.to_string(),
        secret_sha256: sha256_hex(secret.as_bytes()),
        label: label.to_string(),
        created_unix_ms: now_unix_ms(),
    };
    store.create_node(&rec).map_err(|e| match e {
        fabrouter_store::StoreError::AlreadyExists(_) => {
            Status::already_exists(format!("node {node_id} already exists; pick another id"))
        }
        other => crate::store_status(other),
    })?;
    Ok(secret)
}

fn unauthenticated(reason: &str) -> Status {
    crate::errors::denied(Denial::Unauthenticated(reason.to_string()))
}

/// Authenticates a request from its metadata (step 1 of the access rules).
pub fn authenticate(store: &dyn Store, md: &MetadataMap) -> Result<Principal, Status> {
    let header = md.get("authorization").ok_or_else(|| {
        unauthenticated(
            "missing `authorization: Bearer <token>`; create a token with `fab admin token create`",
        )
    })?;
    let value = header
        .to_str()
        .map_err(|_| unauthenticated("authorization header is not ASCII"))?;
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauthenticated("authorization must be `Bearer <token>`"))?
        .trim();
    if let Some(rest) = secret.strip_prefix("node:") {
        let (node_id, node_secret) = rest
            .split_once(':')
            .ok_or_else(|| unauthenticated("node credentials are `node:{id}:{secret}`"))?;
        let node = store
            .get_node(node_id)
            .map_err(crate::store_status)?
            .filter(|n| n.secret_sha256 == sha256_hex(node_secret.as_bytes()))
            .ok_or_else(|| unauthenticated("unknown node or wrong node secret"))?;
        return Ok(Principal {
            id: format!("node-{}", node.node_id),
            role: Role::Node,
            credential: node.node_id,
        });
    }
    let token = store
        .token_by_secret_sha256(&sha256_hex(secret.as_bytes()))
        .map_err(crate::store_status)?
        .ok_or_else(|| unauthenticated("unknown or revoked token"))?;
    Ok(Principal {
        id: token.principal,
        role: role_from_pb(token.role),
        credential: token.id,
    })
}
