//! Presence, gathered: every live edge is asked for its connections in a group (or of a
//! user), in parallel. Nothing is stored, so nothing goes stale: an edge that died answers
//! "no responders" at once and its connections simply stop being counted.

use std::time::Duration;

use futures_util::future::join_all;
use signalbox_bus::BusError;
use signalbox_core::Scope;
use signalbox_proto::wire::{self, Body, Control, ControlOp, ControlReply, PresenceEntry, PresenceQuery};

use crate::ApiState;
use crate::nodes::PRESENCE_WINDOW;

/// How long an edge has to answer.
const EDGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a roll call is given when no edge is known yet.
const ROLL_CALL_WAIT: Duration = Duration::from_millis(200);

impl ApiState {
    /// The connections in `scope` that match `query`, from every live edge.
    pub(crate) async fn presence(&self, scope: &Scope, query: PresenceQuery) -> Vec<PresenceEntry> {
        let control = Control {
            app: scope.app.to_string(),
            hub: scope.hub.to_string(),
            connection: String::new(),
            user: String::new(),
            op: Some(ControlOp::Presence(query)),
        };
        let packet = wire::encode(Body::Control(control));
        let mut nodes = self.nodes.live(PRESENCE_WINDOW);
        if nodes.is_empty() {
            // Just started, or every edge is new: ask them to say who they are.
            if self.bus.publish(self.subjects.roll_call(), bytes::Bytes::new()).await.is_ok() {
                tokio::time::sleep(ROLL_CALL_WAIT).await;
                nodes = self.nodes.live(PRESENCE_WINDOW);
            }
        }
        let asks = nodes.into_iter().map(|node| {
            let subject = self.subjects.node(&node, &scope.app);
            let packet = packet.clone();
            async move {
                match self.bus.request(subject, packet, EDGE_TIMEOUT).await {
                    Ok(reply) => match wire::decode(reply) {
                        Ok(Body::ControlReply(ControlReply { presence, .. })) => presence,
                        _ => {
                            tracing::warn!(node = %node, "an edge sent an unreadable presence answer");
                            Vec::new()
                        }
                    },
                    // Gone since its last heartbeat: it holds nobody.
                    Err(BusError::NoResponders) => Vec::new(),
                    Err(err) => {
                        metrics::counter!("signalbox_presence_partial_total").increment(1);
                        tracing::warn!(node = %node, error = %err, "an edge did not answer a presence query");
                        Vec::new()
                    }
                }
            }
        });
        join_all(asks).await.into_iter().flatten().collect()
    }
}
