//! What a DNS fault does to a query it takes, and the DNS messages it answers with, parsed and
//! built with hickory-proto (no hand-written wire format): the question of a query, an answer
//! with an error code (`fail`), or addresses of the user's choosing (`spoof`).
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, RData, Record, RecordType},
};
use serde::Serialize;

use super::names::{NamePattern, QueryTypes};

/// The error codes `fail` answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Rcode {
    NxDomain,
    ServFail,
    Refused,
}

impl Rcode {
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::NxDomain => "NXDOMAIN",
            Self::ServFail => "SERVFAIL",
            Self::Refused => "REFUSED",
        }
    }

    const fn code(self) -> ResponseCode {
        match self {
            Self::NxDomain => ResponseCode::NXDomain,
            Self::ServFail => ResponseCode::ServFail,
            Self::Refused => ResponseCode::Refused,
        }
    }
}

/// Parses `--rcode`: `nxdomain`, `servfail`, `refused` (any case).
pub fn parse_rcode(text: &str) -> Result<Rcode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "nxdomain" => Ok(Rcode::NxDomain),
        "servfail" => Ok(Rcode::ServFail),
        "refused" => Ok(Rcode::Refused),
        _ => Err(format!(
            "'{text}' is not an answer code chaos gives: nxdomain (the name does not exist), servfail (the \
             resolver failed) or refused"
        )),
    }
}

/// What the fault does to a query it takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer at once with this code.
    Fail(Rcode),
    /// Answer nothing: the client times out.
    Drop,
    /// Forward it to the resolver after the delay the fault's configuration holds (`--by`,
    /// `--jitter`): the real answer, late.
    Delay,
    /// Answer A and AAAA queries with these addresses.
    Spoof { v4: Vec<Ipv4Addr>, v6: Vec<Ipv6Addr>, ttl: u32 },
}

/// Which queries a fault takes and what it does to them.
#[derive(Clone, Debug)]
pub struct Rules {
    pub names: Vec<NamePattern>,
    pub types: QueryTypes,
    pub action: Action,
}

impl Rules {
    /// Whether the fault takes this question. `spoof` takes only the address types: other
    /// types of its names go to the resolver.
    #[must_use]
    pub fn takes(&self, question: &Question) -> bool {
        let spoofable = !matches!(self.action, Action::Spoof { .. })
            || matches!(question.query_type, RecordType::A | RecordType::AAAA);
        spoofable && self.types.matches(question.query_type) && self.names.iter().any(|n| n.matches(&question.name))
    }

    /// The answer to send at once, or None (drop; delay forwards later).
    #[must_use]
    pub fn answer(&self, question: &Question) -> Option<Vec<u8>> {
        match &self.action {
            Action::Fail(rcode) => encode(&response(&question.message, rcode.code())),
            Action::Spoof { v4, v6, ttl } => encode(&spoofed(question, v4, v6, *ttl)),
            Action::Drop | Action::Delay => None,
        }
    }

    /// What the fault did, for injection records: `NXDOMAIN`, `dropped`, `spoofed 10.0.0.9`.
    #[must_use]
    pub fn did(&self, question: &Question, delayed: Duration) -> String {
        match &self.action {
            Action::Fail(rcode) => rcode.name().to_owned(),
            Action::Drop => "dropped".to_owned(),
            Action::Delay => format!("delayed {}", humantime::format_duration(round_to_ms(delayed))),
            Action::Spoof { v4, v6, .. } => {
                let addresses: Vec<String> = match question.query_type {
                    RecordType::A => v4.iter().map(ToString::to_string).collect(),
                    _ => v6.iter().map(ToString::to_string).collect(),
                };
                if addresses.is_empty() {
                    "spoofed (no address)".to_owned()
                } else {
                    format!("spoofed {}", addresses.join(","))
                }
            }
        }
    }
}

fn round_to_ms(delay: Duration) -> Duration {
    Duration::from_millis(delay.as_millis() as u64)
}

/// A query's question, as the fault matches it.
#[derive(Clone, Debug)]
pub struct Question {
    /// Lowercase, without the trailing dot.
    pub name: String,
    pub query_type: RecordType,
    pub message: Message,
}

/// The (first) question of a standard query for class IN, or None for anything else (which is
/// forwarded untouched).
#[must_use]
pub fn question(bytes: &[u8]) -> Option<Question> {
    let message = Message::from_vec(bytes).ok()?;
    if message.metadata.message_type != MessageType::Query || message.metadata.op_code != OpCode::Query {
        return None;
    }
    let query = message.queries.first()?;
    if query.query_class() != DNSClass::IN {
        return None;
    }
    let name = query.name().to_lowercase().to_ascii();
    let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
    Some(Question { name, query_type: query.query_type(), message })
}

/// The ID of a DNS message (its first two bytes), to pair answers with queries.
#[must_use]
pub fn message_id(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// A reply to `query` with `code` and no records: the question echoed, recursion offered as a
/// resolver would, and an OPT record when the query had one (RFC 6891 asks for it).
fn response(query: &Message, code: ResponseCode) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = query.metadata.checking_disabled;
    reply.metadata.response_code = code;
    reply.queries.clone_from(&query.queries);
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        reply.edns = Some(edns);
    }
    reply
}

/// The spoofed answer: the question's type of the given addresses, each with `ttl`; none of
/// that type makes an empty answer (the name exists, without records of the type).
fn spoofed(question: &Question, v4: &[Ipv4Addr], v6: &[Ipv6Addr], ttl: u32) -> Message {
    let mut reply = response(&question.message, ResponseCode::NoError);
    let name = question.message.queries[0].name().clone();
    let data: Vec<RData> = match question.query_type {
        RecordType::A => v4.iter().map(|&a| RData::from(a)).collect(),
        RecordType::AAAA => v6.iter().map(|&a| RData::from(a)).collect(),
        _ => Vec::new(),
    };
    reply.answers = data.into_iter().map(|rdata| Record::from_rdata(name.clone(), ttl, rdata)).collect();
    reply
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    message.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use hickory_proto::{
        op::Query,
        rr::{Name, RecordType},
    };

    use super::*;
    use crate::fault::dns::names::{QueryType, parse_name_pattern};

    fn query(name: &str, query_type: RecordType, edns: bool) -> Vec<u8> {
        let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), query_type));
        if edns {
            message.edns = Some(Edns::new());
        }
        message.to_vec().unwrap()
    }

    fn rules(action: Action) -> Rules {
        Rules {
            names: vec![parse_name_pattern("*.example.com").unwrap()],
            types: QueryTypes::of(&[QueryType::Any]),
            action,
        }
    }

    #[test]
    fn a_failed_query_gets_its_code_its_question_and_its_id() {
        let asked = question(&query("API.Example.com.", RecordType::A, true)).unwrap();
        assert_eq!(asked.name, "api.example.com");
        let fail = rules(Action::Fail(Rcode::NxDomain));
        assert!(fail.takes(&asked));
        let reply = Message::from_vec(&fail.answer(&asked).unwrap()).unwrap();
        assert_eq!(reply.metadata.id, 0x4242);
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert!(reply.metadata.recursion_desired && reply.metadata.recursion_available);
        assert_eq!(reply.queries, asked.message.queries);
        assert!(reply.answers.is_empty() && reply.edns.is_some());
        assert_eq!(fail.did(&asked, Duration::ZERO), "NXDOMAIN");
    }

    #[test]
    fn a_spoofed_query_gets_exactly_the_given_addresses_of_its_type() {
        let spoof = rules(Action::Spoof {
            v4: vec![Ipv4Addr::new(10, 9, 8, 7), Ipv4Addr::new(10, 9, 8, 6)],
            v6: vec!["fd00::9".parse().unwrap()],
            ttl: 1,
        });
        let a = question(&query("db.example.com.", RecordType::A, false)).unwrap();
        let reply = Message::from_vec(&spoof.answer(&a).unwrap()).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        let answers: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(answers, ["10.9.8.7", "10.9.8.6"]);
        assert!(reply.answers.iter().all(|r| r.ttl == 1));
        assert!(reply.edns.is_none(), "no OPT record unless the query had one");
        let aaaa = question(&query("db.example.com.", RecordType::AAAA, false)).unwrap();
        let reply = Message::from_vec(&spoof.answer(&aaaa).unwrap()).unwrap();
        assert_eq!(reply.answers.len(), 1);
        let txt = question(&query("db.example.com.", RecordType::TXT, false)).unwrap();
        assert!(!spoof.takes(&txt), "spoof leaves types without addresses to the resolver");
    }

    #[test]
    fn other_names_and_non_queries_are_not_taken() {
        let fail = rules(Action::Fail(Rcode::ServFail));
        assert!(!fail.takes(&question(&query("example.org.", RecordType::A, false)).unwrap()));
        let mut answer = Message::from_vec(&query("x.example.com.", RecordType::A, false)).unwrap();
        answer.metadata.message_type = MessageType::Response;
        assert!(question(&answer.to_vec().unwrap()).is_none(), "a response is not a question");
        assert!(question(b"\x00\x01garbage").is_none());
        assert_eq!(message_id(&[0x12, 0x34, 0]), Some(0x1234));
        assert_eq!(parse_rcode("SERVFAIL"), Ok(Rcode::ServFail));
        assert!(parse_rcode("nope").unwrap_err().contains("nxdomain"));
    }
}
