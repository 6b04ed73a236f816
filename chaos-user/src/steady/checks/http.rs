//! The HTTP(S) check: one request through reqwest (rustls: system roots, a CA file, or no
//! verification for self-signed test services; HTTP/1.1, or HTTP/2 where the server offers it
//! by ALPN), its status, optionally its body, and the latency the caller measures around it.
use std::{fmt, path::Path, time::Duration};

use reqwest::{Certificate, Client, Method, Url, header::HeaderMap};

/// An HTTP(S) check, with the client it uses built once (its trust roots read at parse time).
#[derive(Clone, Debug)]
pub(crate) struct HttpCheck {
    pub url: Url,
    /// The URL as the file spelt it (shown in reports).
    pub original: String,
    pub method: Method,
    pub headers: HeaderMap,
    pub status: u16,
    pub max_latency: Option<Duration>,
    pub body_contains: Option<String>,
    client: Client,
}

/// How the client trusts servers.
#[derive(Clone, Debug, Default)]
pub(crate) enum Trust {
    /// The system's root certificates.
    #[default]
    System,
    /// Only the certificates of this PEM file.
    Ca(std::path::PathBuf),
    /// Any certificate (self-signed test services).
    Insecure,
}

/// Checks an `http://` or `https://` URL, e.g. `https://127.0.0.1:8443/health`.
pub(crate) fn parse_http_url(text: &str) -> Result<Url, String> {
    let url =
        Url::parse(text).map_err(|e| format!("'{text}' is not a URL ({e}), e.g. http://127.0.0.1:8080/health"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("'{text}' is not an http:// or https:// URL, e.g. http://127.0.0.1:8080/health"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{text}' has no host"));
    }
    if url.port() == Some(0) {
        return Err(format!("'{text}': 0 is not a port"));
    }
    Ok(url)
}

/// What an HTTP check asks, before its client is built.
pub(crate) struct HttpRequest {
    pub original: String,
    pub method: Method,
    pub headers: HeaderMap,
    pub status: u16,
    pub max_latency: Option<Duration>,
    pub body_contains: Option<String>,
    pub trust: Trust,
}

impl HttpCheck {
    /// Builds the check and its client; `Err` says what is wrong with the URL or the trust.
    pub(crate) fn new(request: HttpRequest) -> Result<Self, String> {
        let url = parse_http_url(&request.original)?;
        let client = client(&request.trust)?;
        let HttpRequest { original, method, headers, status, max_latency, body_contains, .. } = request;
        Ok(Self { url, original, method, headers, status, max_latency, body_contains, client })
    }

    /// The same check against another URL (a control group's replica), with the same client.
    pub(crate) fn with_url(&self, text: &str) -> Result<Self, String> {
        let url = parse_http_url(text)?;
        if url.scheme() != self.url.scheme() {
            return Err(format!(
                "'{text}' is {} but the check is {}: the two groups must be asked alike",
                url.scheme(),
                self.url.scheme()
            ));
        }
        Ok(Self { url, original: text.to_owned(), ..self.clone() })
    }

    pub(crate) async fn attempt(&self) -> Result<String, String> {
        let response = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let got = response.status().as_u16();
        if got != self.status {
            return Err(format!("status {got}, expected {}", self.status));
        }
        if let Some(text) = &self.body_contains {
            let body = response.text().await.map_err(|e| format!("reading the body: {}", describe(&e)))?;
            if !body.contains(text.as_str()) {
                return Err(format!("status {got} but the body does not contain {text:?}"));
            }
        }
        Ok(got.to_string())
    }
}

fn client(trust: &Trust) -> Result<Client, String> {
    let mut builder = Client::builder()
        .use_rustls_tls()
        // A new connection per check, as a client arriving fresh would open: a fault on
        // connection setup (a lost SYN) shows, and one broken connection is not reused.
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        // The check goes where the file says, never through a proxy from the environment.
        .no_proxy()
        .user_agent("chaos");
    match trust {
        Trust::System => {}
        Trust::Ca(path) => {
            builder = builder.tls_built_in_root_certs(false);
            for cert in read_ca(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Trust::Insecure => builder = builder.danger_accept_invalid_certs(true),
    }
    builder.build().map_err(|e| format!("cannot build the HTTP client: {}", describe(&e)))
}

fn read_ca(path: &Path) -> Result<Vec<Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let certs = Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display()));
    }
    Ok(certs)
}

/// reqwest's error with its causes, which hold the useful part (refused, certificate unknown).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_connect() { "connect".to_owned() } else { "request".to_owned() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if std::error::Error::source(error).is_none() {
        text.push_str(&format!(": {error}"));
    }
    text
}

impl fmt::Display for HttpCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.original, self.status)?;
        if let Some(text) = &self.body_contains {
            write!(f, " containing {text:?}")?;
        }
        if let Some(max) = self.max_latency {
            write!(f, " within {}", humantime::format_duration(max))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_parse() {
        let url = parse_http_url("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(
            (url.host_str(), url.port_or_known_default(), url.path()),
            (Some("127.0.0.1"), Some(8080), "/health")
        );
        let url = parse_http_url("https://api.internal").unwrap();
        assert_eq!((url.host_str(), url.port_or_known_default()), (Some("api.internal"), Some(443)));
        let url = parse_http_url("http://[::1]:81/").unwrap();
        assert_eq!(url.port(), Some(81));
    }

    #[test]
    fn bad_http_urls_say_why() {
        for (input, expected) in [
            ("ftp://x/", "is not an http:// or https:// URL"),
            ("http://:80/", "is not a URL"),
            ("http://x:99999/", "is not a URL"),
            ("http://x:0/", "0 is not a port"),
            ("localhost:80", "is not an http:// or https:// URL"),
        ] {
            let err = parse_http_url(input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn a_ca_file_that_is_not_pem_is_refused() {
        let path = std::env::temp_dir().join(format!("chaos-not-a-ca-{}", std::process::id()));
        std::fs::write(&path, "hello").unwrap();
        let err = read_ca(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("no PEM certificate") || err.contains("not a PEM"), "{err}");
    }
}
