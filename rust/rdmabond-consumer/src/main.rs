//! rbc: a load-balanced RDMA CM consumer of rdmabond groups.
//!
//! `rbc ports rb0` shows a group's ports; `rbc server` listens and acknowledges;
//! `rbc client` spreads RC connections over a group's ports, survives failover and
//! failback, and prints a JSON report.

mod bind;
mod client;
mod discovery;
mod fault;
mod ffi;
mod netlink;
mod plan;
mod proto;
mod rdma;
mod report;
mod rtnl;
mod server;
mod uapi;

use std::net::IpAddr;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rbc", about = "Load-balanced RDMA consumer of rdmabond groups")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create an rdmabond group (through the series' uapi).
    Create {
        group: String,
        /// IFLA_RDMABOND_FAILBACK_DELAY, e.g. 500ms.
        #[arg(long, value_parser = fault::parse_duration)]
        failback_delay: Option<std::time::Duration>,
    },
    /// Print the ports of a group, their state and addresses, as JSON.
    Ports { group: String },
    /// Listen on the given addresses and acknowledge every message.
    Server {
        /// Addresses to listen on.
        #[arg(required = true)]
        addrs: Vec<IpAddr>,
        #[arg(long, default_value_t = 18515)]
        port: u16,
        /// Per-connection window the clients use (sizes the queues).
        #[arg(long, default_value_t = 16)]
        window: u32,
        /// Exit after this long (e.g. 60s); default: run until killed.
        #[arg(long, value_parser = fault::parse_duration)]
        duration: Option<std::time::Duration>,
    },
    /// Connect to the servers over the ports of GROUP and stream messages.
    Client {
        /// The rdmabond group device (e.g. rb0).
        #[arg(long, required_unless_present = "sources", conflicts_with = "sources")]
        group: Option<String>,
        /// No group: connect from these addresses, and after an error from the
        /// next one (the baseline a consumer has without rdmabond).
        #[arg(long, value_delimiter = ',')]
        sources: Vec<IpAddr>,
        /// Server addresses (all IPv4 or all IPv6).
        #[arg(required = true)]
        servers: Vec<IpAddr>,
        #[arg(long, default_value_t = 18515)]
        port: u16,
        /// Number of connections (K).
        #[arg(short = 'k', long, default_value_t = 4)]
        connections: u32,
        /// New messages per second per connection.
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// Unacknowledged messages allowed per connection.
        #[arg(long, default_value_t = 16)]
        window: u32,
        /// How long new messages are generated (e.g. 12s).
        #[arg(long, default_value = "10s", value_parser = fault::parse_duration)]
        duration: std::time::Duration,
        /// Longest wait, after the duration, for every message to be acknowledged.
        #[arg(long, default_value = "20s", value_parser = fault::parse_duration)]
        drain: std::time::Duration,
        /// `at=2s,cmd=ip link set a0 down` (repeatable; cmd= comes last).
        #[arg(long)]
        fault: Vec<String>,
        /// Pretty-print the JSON report.
        #[arg(long)]
        pretty: bool,
    },
    /// Bind COUNT RDMA CM ids to ADDR and count the ADDR_CHANGE events they get.
    Bind {
        addr: IpAddr,
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// How long to wait for events (e.g. 10s).
        #[arg(long, default_value = "10s", value_parser = fault::parse_duration)]
        duration: std::time::Duration,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if uapi::FALLBACK {
        bail!(
            "this rbc was built without the patched kernel's uapi headers \
             (cfg rdmabond_uapi_fallback); rebuild with RDMABOND_UAPI_INCLUDE=<kbuild>/usr/include \
             or through cargo xtask"
        );
    }
    match cli.cmd {
        Cmd::Create {
            group,
            failback_delay,
        } => {
            let ms = failback_delay.map(|d| d.as_millis() as u32);
            rtnl::Socket::open(0)?.create_group(&group, ms)?;
        }
        Cmd::Ports { group } => {
            let g = discovery::discover(&group)?;
            println!("{}", serde_json::to_string_pretty(&g)?);
        }
        Cmd::Server {
            addrs,
            port,
            window,
            duration,
        } => server::run(&server::Options {
            addrs,
            port,
            depth: window,
            duration,
        })?,
        Cmd::Bind {
            addr,
            count,
            duration,
        } => {
            let r = bind::run(addr, count, duration)?;
            println!("{}", serde_json::to_string(&r)?);
        }
        Cmd::Client {
            group,
            sources,
            servers,
            port,
            connections,
            rate,
            window,
            duration,
            drain,
            fault,
            pretty,
        } => {
            let faults = fault::parse_all(&fault)?;
            let r = client::run(&client::Options {
                group,
                sources,
                servers,
                port,
                connections,
                rate,
                window,
                duration,
                drain,
                faults,
            })?;
            let text = if pretty {
                serde_json::to_string_pretty(&r)?
            } else {
                serde_json::to_string(&r)?
            };
            println!("{text}");
            if !r.ok {
                bail!("problems: {}", r.problems.join("; "));
            }
        }
    }
    Ok(())
}
