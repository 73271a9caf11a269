//! Local stand-ins for paid external services (an LLM API, Emailable, a docs server): HTTP
//! servers on 127.0.0.1 that record every request and answer as told.

use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One request a [`RecordingServer`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// The answer a [`RecordingServer`] gives: status, content type, body.
pub type Reply = (u16, &'static str, String);

/// An answer with any headers: status, headers, body ([`RecordingServer::start_with_headers`]).
pub type ReplyWithHeaders = (u16, Vec<(&'static str, String)>, String);

/// A stand-in for a paid external service (an LLM, Emailable, a docs server): a local HTTP
/// server on 127.0.0.1 that records every request and answers with `respond`. It runs on a
/// thread of its own (independent of the test's runtime) and stops when dropped.
pub struct RecordingServer {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RecordingServer {
    pub fn start(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> RecordingServer {
        Self::start_with_headers(move |req| {
            let (status, content_type, body) = respond(req);
            (status, vec![("content-type", content_type.to_string())], body)
        })
    }

    /// [`RecordingServer::start`] for answers that set headers of their own.
    pub fn start_with_headers(
        respond: impl Fn(&Recorded) -> ReplyWithHeaders + Send + Sync + 'static,
    ) -> RecordingServer {
        use http_body_util::{BodyExt, Full};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (log, respond) = (requests.clone(), Arc::new(respond));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    let stream = tokio::select! {
                        accepted = listener.accept() => match accepted { Ok((s, _)) => s, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    let (log, respond) = (log.clone(), respond.clone());
                    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (log, respond) = (log.clone(), respond.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body =
                                body.collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();
                            let recorded = Recorded {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                                    .collect(),
                                body: String::from_utf8_lossy(&body).into_owned(),
                            };
                            let (status, headers, reply) = respond(&recorded);
                            log.lock().unwrap().push(recorded);
                            let mut response = hyper::Response::builder().status(status);
                            for (name, value) in headers {
                                response = response.header(name, value);
                            }
                            response.body(Full::new(hyper::body::Bytes::from(reply)))
                        }
                    });
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
            });
        });
        RecordingServer { url, requests, stop: Some(stop) }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RecordingServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
