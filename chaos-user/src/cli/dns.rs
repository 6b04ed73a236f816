//! `chaos dns ...`: the target's lookups of chosen names fail, time out, come late or lie.
use std::process::ExitCode;

use clap::Subcommand;

use super::fault::FaultArgs;
use crate::{
    fault::dns::{DnsDelayOptions, DnsDropOptions, DnsFailOptions, DnsSpoofOptions},
    report::OutputFormat,
};

/// What every DNS subcommand's help ends with.
macro_rules! dns_help {
    ($examples:literal) => {
        concat!(
            "Examples:\n",
            $examples,
            "\n\nThe target's own DNS queries (port 53, UDP and TCP, IPv4 and IPv6), whichever resolver they are
sent to (resolv.conf's, 127.0.0.53, Docker's 127.0.0.11, a hard-coded one), go to a responder
chaos runs in the target's network namespace; it answers the matching ones and forwards the
others to the resolver asked. Other cgroups' lookups are untouched, and a caching resolver
cannot hide the fault (it sits in front of it). What does hide it: a cache inside the process,
nscd or systemd-resolved through nss, DNS over HTTPS or TLS. --name is a glob over the whole
name ('*.example.com' covers every name below example.com); case and a trailing dot do not
matter. The fault ends at its deadline even if chaos is stopped or killed (docs/dns.md)."
        )
    };
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Answer the target's queries for some names with an error code, at once.
    #[command(after_help = dns_help!("  chaos dns fail --cgroup /app --name api.example.com --rcode nxdomain --for 1m
  chaos dns fail --container 3f2a --name '*.internal' --rcode servfail --percent 30 --for 5m
  chaos dns fail --unit web.service --name db.example.com --type AAAA --rcode refused --for 2m"))]
    Fail(Box<FaultArgs<DnsFailOptions>>),
    /// Answer nothing to the target's queries for some names: its lookups time out.
    #[command(after_help = dns_help!("  chaos dns drop --cgroup /app --name '*.example.com' --for 1m
  chaos dns drop --pod shop/web-0 --name payments.shop.svc.cluster.local --percent 50 --for 5m"))]
    Drop(Box<FaultArgs<DnsDropOptions>>),
    /// Give the target the real answers for some names, late.
    #[command(after_help = dns_help!("  chaos dns delay --cgroup /app --name '*' --by 500ms --for 1m
  chaos dns delay --container 3f2a --name api.example.com --by 2s --jitter 500ms --for 5m"))]
    Delay(Box<FaultArgs<DnsDelayOptions>>),
    /// Answer the target's A and AAAA queries for some names with addresses of your choosing.
    #[command(after_help = dns_help!("  chaos dns spoof --cgroup /app --name sqs.eu-west-1.amazonaws.com --address 10.0.9.9 --for 5m
  chaos dns spoof --container 3f2a --name db.internal --address 10.0.0.7,fd00::7 --ttl 30s --for 2m"))]
    Spoof(Box<FaultArgs<DnsSpoofOptions>>),
}

impl DnsCommand {
    pub fn run(self, output: OutputFormat) -> anyhow::Result<ExitCode> {
        match self {
            Self::Fail(args) => args.run(output),
            Self::Drop(args) => args.run(output),
            Self::Delay(args) => args.run(output),
            Self::Spoof(args) => args.run(output),
        }
    }
}
