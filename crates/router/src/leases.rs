//! Leases: a node silent for longer than its lease is offline; its printers stop taking jobs,
//! jobs it had not started are re-routed at once, and jobs it had started get a grace to come
//! back before they are re-routed too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Network;
use crate::model::PrinterState;
use crate::protocol::Hangup;

impl Network {
    /// Lease bookkeeping: marks silent nodes offline, re-routes their work.
    pub fn tick(&self) {
        let mut reroutes: Vec<(String, u64, &str)> = Vec::new();
        let mut inner = self.lock();
        let lease = Duration::from_secs_f64(self.config.lease_s);
        let grace = Duration::from_secs_f64(self.config.lost_grace_s);
        let now = Instant::now();
        let expired: Vec<String> = inner
            .nodes
            .iter()
            .filter(|(_, n)| !n.offline && now.duration_since(n.last_seen) > lease)
            .map(|(id, _)| id.clone())
            .collect();
        for node in &expired {
            tracing::warn!(%node, "node missed its lease: offline");
            if let Some(n) = inner.nodes.get_mut(node) {
                n.offline = true;
                if let Some(c) = n.conn.take() {
                    let _ = c.tx.send(Err(Hangup(
                        "lease expired: reconnect and send NodeHello".into(),
                    )));
                }
            }
            {
                let mut fleet = self.fleet_mut();
                for (name, p) in inner.printers.iter_mut() {
                    if &p.node == node {
                        p.state = PrinterState::Offline;
                        let _ = fleet.set_state(name, PrinterState::Offline);
                    }
                }
            }
            for (id, a) in inner.jobs.iter_mut().filter(|(_, a)| a.on_node(node)) {
                if a.state.started() {
                    a.lost_since.get_or_insert(now);
                } else {
                    reroutes.push((id.clone(), a.epoch, "the node went offline before printing"));
                }
            }
        }
        reroutes.extend(
            inner
                .jobs
                .iter()
                .filter(|(_, a)| a.lost_since.is_some_and(|t| now.duration_since(t) > grace))
                .map(|(id, a)| {
                    (
                        id.clone(),
                        a.epoch,
                        "the printer went silent while printing and did not come back",
                    )
                }),
        );
        // Re-routing reads and writes the store: not under the registry lock.
        drop(inner);
        for (id, epoch, why) in reroutes {
            self.reroute(&id, epoch, why, false);
        }
    }

    /// Runs [`Network::tick`] until the router stops.
    pub fn spawn_lease_monitor(self: &Arc<Self>) {
        let net = Arc::downgrade(self);
        let period = Duration::from_secs_f64((self.config.lease_s / 4.0).max(0.05));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(period);
            loop {
                interval.tick().await;
                let Some(net) = net.upgrade() else { return };
                net.tick();
            }
        });
    }
}
