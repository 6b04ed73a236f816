//! The Prometheus check: an instant query through the HTTP API (`/api/v1/query`), its result
//! reduced to one number and compared with bounds. Errors from the server (a bad query, no
//! data, an unreachable server) are failures carrying the server's message.
use std::{fmt, str::FromStr};

use reqwest::{Client, Url};
use serde_json::Value;

use crate::steady::{Failed, Seen};

/// `min <= value <= max`, either side optional (`between = [a, b]` sets both).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Bounds {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// How a vector of several samples becomes one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduce {
    Max,
    Min,
    Sum,
    Avg,
}

impl FromStr for Reduce {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "max" => Ok(Self::Max),
            "min" => Ok(Self::Min),
            "sum" => Ok(Self::Sum),
            "avg" => Ok(Self::Avg),
            _ => Err(format!("'{text}' is not a reduction: use max, min, sum or avg")),
        }
    }
}

impl Reduce {
    fn apply(self, values: &[f64]) -> f64 {
        match self {
            Self::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Self::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Self::Sum => values.iter().sum(),
            Self::Avg => values.iter().sum::<f64>() / values.len() as f64,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Max => "max",
            Self::Min => "min",
            Self::Sum => "sum",
            Self::Avg => "avg",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct PrometheusCheck {
    /// The server's base URL, e.g. `http://127.0.0.1:9090`.
    pub server: Url,
    pub query: String,
    pub bounds: Bounds,
    pub reduce: Option<Reduce>,
    /// Where the query is in the experiment file, for errors the server finds at validate time.
    pub query_span: std::ops::Range<usize>,
    client: Client,
}

/// What asking the server about a query at validate time found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueryCheck {
    /// The server accepted the query (it may have no data yet: that is for the run to see).
    Accepted,
    /// The server said the query is wrong (syntax, types): an error in the file.
    Invalid(String),
    /// The server could not be asked: a warning, since it may be up by the time of the run.
    Unreachable(String),
}

impl PrometheusCheck {
    pub(crate) fn new(server: &str, query: String, bounds: Bounds, reduce: Option<Reduce>) -> Result<Self, String> {
        let server = super::http::parse_http_url(server)?;
        let client = Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .user_agent("chaos")
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { server, query, bounds, reduce, query_span: 0..0, client })
    }

    /// The same check with another query (the control group's series), on the same server.
    #[must_use]
    pub(crate) fn with_query(&self, query: String, span: std::ops::Range<usize>) -> Self {
        Self { query, query_span: span, ..self.clone() }
    }

    /// The instant query's JSON answer; `Err` when the server cannot be reached or answers no JSON.
    async fn ask(&self) -> Result<Value, String> {
        let mut url = self.server.clone();
        url.path_segments_mut()
            .map_err(|()| format!("{} cannot take a path", self.server))?
            .pop_if_empty()
            .extend(["api", "v1", "query"]);
        let response = self
            .client
            .get(url)
            .query(&[("query", self.query.as_str())])
            .send()
            .await
            .map_err(|e| format!("cannot reach Prometheus at {}: {}", self.server, error_chain(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| format!("reading Prometheus's answer: {e}"))?;
        serde_json::from_str(&body).map_err(|_| {
            format!("Prometheus answered {status} without JSON: {:?}", body.chars().take(80).collect::<String>())
        })
    }

    pub(crate) async fn attempt(&self) -> Result<Seen, Failed> {
        let answer = self.ask().await?;
        let value = self.value_of(&answer)?;
        let seen = format!("{value}");
        if value.is_nan() {
            return Err(Failed { detail: "the query gave NaN".into(), value: None });
        }
        if let Some(min) = self.bounds.min
            && value < min
        {
            return Err(Failed { detail: format!("{seen}, below the minimum {min}"), value: Some(value) });
        }
        if let Some(max) = self.bounds.max
            && value > max
        {
            return Err(Failed { detail: format!("{seen}, above the maximum {max}"), value: Some(value) });
        }
        Ok(Seen { detail: seen, value: Some(value) })
    }

    /// The one number of an answer, or why there is none.
    fn value_of(&self, answer: &Value) -> Result<f64, String> {
        if answer["status"] != "success" {
            return Err(format!(
                "Prometheus: {} ({})",
                answer["error"].as_str().unwrap_or("an error without a message"),
                answer["errorType"].as_str().unwrap_or("unknown")
            ));
        }
        let data = &answer["data"];
        let result = &data["result"];
        match data["resultType"].as_str() {
            Some("scalar") => sample(result),
            Some("vector") => {
                let samples = result.as_array().ok_or("Prometheus: a vector result that is not an array")?;
                let values = samples.iter().map(|s| sample(&s["value"])).collect::<Result<Vec<_>, _>>()?;
                match (values.as_slice(), self.reduce) {
                    ([], _) => Err(format!("no data: {} matched no series", self.query)),
                    ([one], None) => Ok(*one),
                    (_, Some(reduce)) => Ok(reduce.apply(&values)),
                    (many, None) => Err(format!(
                        "the query returned {} series: say how to make one number of them, e.g. reduce = \"max\"",
                        many.len()
                    )),
                }
            }
            other => Err(format!(
                "the query gave a {} result: use an expression that gives a number or an instant vector",
                other.unwrap_or("missing")
            )),
        }
    }

    /// Asks the server whether the query is valid (at validate time).
    pub(crate) async fn validate(&self) -> QueryCheck {
        match self.ask().await {
            Err(why) => QueryCheck::Unreachable(why),
            Ok(answer) if answer["status"] == "error" && answer["errorType"] == "bad_data" => {
                QueryCheck::Invalid(answer["error"].as_str().unwrap_or("invalid query").to_owned())
            }
            Ok(_) => QueryCheck::Accepted,
        }
    }
}

/// `[timestamp, "value"]` to the value.
fn sample(pair: &Value) -> Result<f64, String> {
    let text = pair.get(1).and_then(Value::as_str).ok_or("Prometheus: a sample without a value")?;
    text.parse::<f64>().map_err(|_| format!("Prometheus: {text:?} is not a number"))
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl fmt::Display for PrometheusCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PromQL {:?} at {}", self.query, self.server)?;
        if let Some(reduce) = self.reduce {
            write!(f, " ({} of the series)", reduce.name())?;
        }
        match (self.bounds.min, self.bounds.max) {
            (Some(min), Some(max)) => write!(f, " between {min} and {max}"),
            (Some(min), None) => write!(f, " >= {min}"),
            (None, Some(max)) => write!(f, " <= {max}"),
            (None, None) => write!(f, " gives a number"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reduce: Option<Reduce>) -> PrometheusCheck {
        PrometheusCheck::new("http://127.0.0.1:9090", "up".into(), Bounds::default(), reduce).unwrap()
    }

    #[test]
    fn answers_become_one_number_or_a_reason() {
        let vector = |values: &[&str]| {
            let samples: Vec<Value> =
                values.iter().map(|v| serde_json::json!({"metric": {}, "value": [1.5, v]})).collect();
            serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": samples}})
        };
        assert_eq!(check(None).value_of(&vector(&["3"])), Ok(3.0));
        assert!(check(None).value_of(&vector(&[])).unwrap_err().contains("no data"));
        assert!(check(None).value_of(&vector(&["1", "2"])).unwrap_err().contains("reduce = \"max\""));
        assert_eq!(check(Some(Reduce::Sum)).value_of(&vector(&["1", "2"])), Ok(3.0));
        assert_eq!(check(Some(Reduce::Avg)).value_of(&vector(&["1", "2"])), Ok(1.5));
        assert_eq!(check(Some(Reduce::Min)).value_of(&vector(&["1", "2"])), Ok(1.0));
        assert_eq!(check(Some(Reduce::Max)).value_of(&vector(&["1", "+Inf"])), Ok(f64::INFINITY));
        let scalar = serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1, "0.25"]}});
        assert_eq!(check(None).value_of(&scalar), Ok(0.25));
        let error = serde_json::json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        assert_eq!(check(None).value_of(&error), Err("Prometheus: parse error (bad_data)".into()));
    }
}
