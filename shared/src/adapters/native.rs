//! Native adapters: outbound HTTP through reqwest and background work as tokio local tasks.
//! The native host also uses [`super::sqlite`] and [`super::system`].

use std::cell::Cell;
use std::rc::Rc;

use async_trait::async_trait;

use crate::http::Request;
use crate::store::ports::{Background, BodyChunks, HttpClient, HttpError, LocalFuture, RequestTimeout};

// --- outbound HTTP --------------------------------------------------------------------------

/// Outbound HTTP over reqwest, with the response-size and timeout extensions honoured.
pub struct ReqwestClient {
    client: reqwest::Client,
}

impl ReqwestClient {
    /// A client with the native default bounds (timeouts, no redirects to other hosts).
    pub fn new() -> ReqwestClient {
        // A bound on every outbound call, so background work (event writes) cannot hang a
        // worker's shutdown when a peer stops answering.
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("a reqwest client with default TLS");
        ReqwestClient { client }
    }
}

impl Default for ReqwestClient {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait(?Send)]
impl HttpClient for ReqwestClient {
    async fn open(&self, request: Request) -> Result<http::Response<BodyChunks>, HttpError> {
        use futures_util::{StreamExt, TryStreamExt};
        let (parts, body) = request.into_parts();
        let mut builder = self.client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body);
        if let Some(RequestTimeout(timeout)) = parts.extensions.get::<RequestTimeout>() {
            builder = builder.timeout(*timeout);
        }
        let response = builder.send().await.map_err(|e| HttpError(e.to_string()))?;
        let mut head = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            head = head.header(name, value);
        }
        let chunks = response.bytes_stream().map_ok(|chunk| chunk.to_vec()).map_err(|e| HttpError(e.to_string()));
        head.body(chunks.boxed_local() as BodyChunks).map_err(|e| HttpError(e.to_string()))
    }
}

// --- background work ------------------------------------------------------------------------

/// Runs background work as tasks on the current thread's `LocalSet`, and counts what is still
/// pending so a worker can finish it before shutting down.
#[derive(Clone, Default)]
pub struct LocalBackground {
    pending: Rc<Cell<usize>>,
    idle: Rc<tokio::sync::Notify>,
}

impl LocalBackground {
    /// No work pending yet.
    pub fn new() -> LocalBackground {
        LocalBackground::default()
    }

    /// Waits until every spawned piece of work has finished.
    pub async fn drain(&self) {
        while self.pending.get() > 0 {
            self.idle.notified().await;
        }
    }
}

impl Background for LocalBackground {
    fn spawn(&self, work: LocalFuture) {
        self.pending.set(self.pending.get() + 1);
        let pending = self.pending.clone();
        let idle = self.idle.clone();
        tokio::task::spawn_local(async move {
            work.await;
            pending.set(pending.get() - 1);
            if pending.get() == 0 {
                idle.notify_waiters();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::sqlite::{SqliteStore, SqliteWriter};
    use crate::store::ports::{SqlStore, Statement, StoreError};

    fn store() -> (tempdir::Dir, SqliteStore) {
        let dir = tempdir::Dir::new();
        let writer = SqliteWriter::open(&dir.0.join("db.sqlite")).unwrap();
        let store = SqliteStore::new(&writer).unwrap();
        (dir, store)
    }

    /// A throwaway directory removed on drop (std-only, to keep dev-dependencies small).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).unwrap();
                let path =
                    std::env::temp_dir().join(format!("stack-edge-test-{}", crate::identity::crypto::hex(&bytes)));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }

    #[test]
    fn batches_are_atomic_and_report_changes() {
        let (_dir, store) = store();
        block_on(async {
            store.execute_script("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)").await.unwrap();
            let changed = store
                .batch(&[
                    Statement::new("INSERT INTO t VALUES (?, ?)", vec!["a".into(), 1.into()]),
                    Statement::new("UPDATE t SET v = 2 WHERE k = ?", vec!["missing".into()]),
                ])
                .await
                .unwrap();
            assert_eq!(changed, vec![1, 0]);
            let err = store
                .batch(&[
                    Statement::new("INSERT INTO t VALUES (?, ?)", vec!["b".into(), 1.into()]),
                    Statement::new("INSERT INTO t VALUES (?, ?)", vec!["a".into(), 1.into()]),
                ])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Constraint(_)));
            let rows = store.query("SELECT k FROM t ORDER BY k", &[]).await.unwrap();
            assert_eq!(rows.len(), 1, "the failed batch left nothing behind");
        });
    }

    #[test]
    fn reqwest_client_round_trips_a_request() {
        block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                while !seen.ends_with(b"ping") {
                    let n = socket.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..n]);
                }
                socket
                    .write_all(
                        b"HTTP/1.1 201 Created\r\ncontent-length: 4\r\nx-echo: yes\r\nconnection: close\r\n\r\npong",
                    )
                    .await
                    .unwrap();
                String::from_utf8(seen).unwrap()
            });
            let request = http::Request::post(format!("http://{addr}/path?q=1"))
                .header("x-test", "1")
                .body(b"ping".to_vec())
                .unwrap();
            let response = ReqwestClient::new().send(request).await.unwrap();
            assert_eq!(response.status(), 201);
            assert_eq!(response.headers()["x-echo"], "yes");
            assert_eq!(response.body(), b"pong");
            let seen = server.await.unwrap();
            assert!(seen.starts_with("POST /path?q=1 HTTP/1.1"), "{seen}");
            assert!(seen.contains("x-test: 1"), "{seen}");
        });
    }

    #[test]
    fn background_work_is_drained() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let background = LocalBackground::new();
            let done = Rc::new(Cell::new(0));
            for i in 0..3 {
                let done = done.clone();
                background.spawn(Box::pin(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(10 * i)).await;
                    done.set(done.get() + 1);
                }));
            }
            background.drain().await;
            assert_eq!(done.get(), 3);
        });
    }

    #[test]
    fn migrations_apply_once() {
        let (_dir, store) = store();
        block_on(async {
            let every: Vec<&str> = crate::store::migrations::MIGRATIONS.iter().map(|(name, _)| *name).collect();
            assert_eq!(
                every,
                [
                    "0001_init.sql",
                    "0002_replays.sql",
                    "0003_config.sql",
                    "0004_email.sql",
                    "0005_managed_domains.sql",
                    "0006_email_capacity.sql",
                    "0007_email_recipients.sql",
                    "0008_mcp_call_log.sql",
                    "0009_analytics_event_batches.sql",
                    "0010_analytics_sync.sql",
                    "0011_ai_rate_limits.sql",
                    "0012_refresh_token_rotation.sql",
                    "0013_sign_in.sql",
                    "0014_oauth.sql",
                ]
            );
            assert_eq!(crate::store::migrations::migrate(&store).await.unwrap(), every);
            assert!(crate::store::migrations::migrate(&store).await.unwrap().is_empty());
        });
    }
}
