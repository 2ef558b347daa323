//! `Http`: the actor serving `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::{Shared, TaskSet};

/// Messages of [`Http`].
#[derive(Debug)]
pub enum HttpMsg {
    /// Fault injection: panic.
    Panic,
}

/// Serves `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug)]
pub struct Http;

impl Actor for Http {
    type Msg = HttpMsg;
    type State = TaskSet;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        shared: Arc<Shared>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut tasks = Vec::new();
        for addr in shared.config.http.clone() {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tasks.push(tokio::spawn(crate::http::serve(listener, shared.clone())));
        }
        Ok(TaskSet(tasks))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HttpMsg::Panic => panic!("fault injection: http"),
        }
    }
}
