//! The TCP check: a connect to `host:port` succeeds.
use tokio::net::TcpStream;

pub(crate) async fn attempt(address: &str) -> Result<String, String> {
    TcpStream::connect(address).await.map_err(|e| format!("connect: {e}"))?;
    Ok("connected".into())
}
