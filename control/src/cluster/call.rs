//! Calls to the store: each with one timeout, and reads tried again when the way to a
//! member failed. The client spreads requests over the members it was given; while one
//! member is down, requests sent its way fail at once ("tcp connect error") and the
//! others answer, so a read that failed on the way is asked again rather than taken as
//! the store being gone.
use etcd_client::{Client, GetOptions, GetResponse};
use std::time::Duration;

pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries of a call within its timeout: with one member of three down, each try fails
/// with a chance of about a third, so four leave about one in a hundred.
const TRIES: u32 = 4;

/// A store call with the agent's timeout.
pub async fn timed<T>(f: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// Reads `key` (a prefix if `opts` says so), tried again on errors of the way to a
/// member, all within one timeout.
pub async fn read(c: &Client, key: &str, opts: Option<GetOptions>) -> Result<GetResponse, String> {
    retried(c, key, |mut c| {
        let opts = opts.clone();
        async move { c.get(key, opts).await }
    })
    .await
}

/// `call`, tried again on errors of the way to a member, all within one timeout: for
/// reads, and for writes that mean the same when done twice.
pub async fn retried<T, F>(c: &Client, what: &str, call: impl Fn(Client) -> F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
    let mut tries = 0;
    loop {
        match tokio::time::timeout_at(deadline, call(c.clone())).await {
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) if on_the_way(&e) && tries + 1 < TRIES => {
                tries += 1;
                tracing::debug!("cluster: {what}: {e}; asking again");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {CALL_TIMEOUT:?}")),
        }
    }
}

/// The request did not reach a member that could answer it.
fn on_the_way(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic::Code::Unavailable,
        _ => false,
    }
}
